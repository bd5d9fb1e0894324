from tests.rpc.conftest import pki, server

__all__ = ["pki", "server"]
