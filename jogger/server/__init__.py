"""jogger-server: where the engine meets the transport. The Jobs and Health services
(service.py), the run-as policy (accounts.py), flags (config.py) and the process (main.py)."""
