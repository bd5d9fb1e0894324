"""gRPC over mutual TLS on trio: transport only.

Listeners, connections and calls, what each peer is admitted to hold, who the peer is (from
its client certificate), and the client end. It carries messages and calls, and imports
neither ``jogger.engine`` nor ``jogger.server`` (tests/test_layout.py checks): the servicers
that turn a call into an engine call live in ``jogger.server``.
"""

import importlib.util
import sys
from typing import Any


def _protocol_machine_only() -> None:
    """Import ``purerpc.grpclib`` (purerpc's protocol machine, which protocol.py builds on)
    without running ``purerpc/__init__.py`` until someone asks for the rest of purerpc.

    That ``__init__`` imports purerpc's own anyio client and server, which we never use
    (wire.py is our transport): 16 ms of every ``jog`` start. So, when purerpc is not imported
    yet, its package module is made but not run, and runs on the first attribute that
    ``purerpc.grpclib`` did not set (module ``__getattr__``, PEP 562): a program that uses
    ``from purerpc import Server`` later gets the whole package, sharing these submodules.
    """
    if "purerpc" in sys.modules:
        return
    spec = importlib.util.find_spec("purerpc")
    if spec is None or spec.loader is None:
        return  # not installed: our own import of it fails, as it would have
    package = importlib.util.module_from_spec(spec)

    def the_rest(name: str) -> Any:
        del package.__getattr__  # once: the package's own code defines what it has
        assert spec.loader is not None
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = the_rest  # type: ignore[method-assign]
    sys.modules["purerpc"] = package
    try:
        importlib.import_module("purerpc.grpclib.connection")
    except BaseException:
        del sys.modules["purerpc"]
        raise


_protocol_machine_only()
