"""gRPC over mutual TLS on trio: transport only.

Listeners, connections and calls, what each peer is admitted to hold, who the peer is (from
its client certificate), and the client end. It carries messages and calls, and imports
neither ``jogger.engine`` nor ``jogger.server`` (tests/test_layout.py checks): the servicers
that turn a call into an engine call live in ``jogger.server``.
"""

import importlib.machinery
import sys
import types
from typing import Any


def _protocol_machine_only() -> None:
    """Let ``purerpc.grpclib`` (purerpc's protocol machine, which protocol.py builds on) be
    imported without running ``purerpc/__init__.py`` until someone asks for more of purerpc.

    That ``__init__`` imports purerpc's own anyio client and server, which we never use
    (wire.py is our transport): 16 ms of every ``jog`` start. So, when purerpc is not imported
    yet, its package module is made but not run: importing ``purerpc.grpclib.*`` then runs
    those modules only, and the package runs on the first attribute they did not set (module
    ``__getattr__``, PEP 562). A program that uses ``from purerpc import Server`` still gets
    the whole package, sharing these submodules. Nothing is imported here.
    """
    if "purerpc" in sys.modules:
        return
    # (importlib.machinery, not importlib.util: that one costs a jog start milliseconds.)
    spec = importlib.machinery.PathFinder.find_spec("purerpc")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not installed: our own import of it fails, as it would have
    package = types.ModuleType(spec.name)
    # What importing it would set before running it (importlib's _init_module_attrs).
    package.__spec__ = spec
    package.__loader__ = spec.loader
    package.__package__ = spec.name
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin

    def the_rest(name: str) -> Any:
        del package.__getattr__  # once: the package's own code defines what it has
        assert spec.loader is not None
        try:
            spec.loader.exec_module(package)
        except BaseException:
            # As a failed import leaves it: not imported, and the next import tries again.
            del sys.modules["purerpc"]
            raise
        return getattr(package, name)

    package.__getattr__ = the_rest  # type: ignore[method-assign]
    sys.modules["purerpc"] = package


_protocol_machine_only()
