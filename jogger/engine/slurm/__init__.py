"""The Slurm executor (executor.py) and the Slurm tools it runs (commands.py)."""
