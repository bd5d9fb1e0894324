"""jogger-server in the test's own process: its configuration, and a handle for clients."""

import os
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import trio

from jogger.engine import ManagerLimits
from jogger.rpc.client import JobsClient, open_client
from jogger.server.config import ServerConfig
from jogger.server.main import serve
from tests.pki import Pki


@dataclass
class Server:
    host: str
    port: int
    pki: Pki
    state_dir: Path

    def jog_env(self, user: str = "alice") -> dict[str, str]:
        """The environment for the real `jog` of ``user`` against this server."""
        pair = self.pki.user(user)
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("JOGGER_")},
            "JOGGER_HOST": f"localhost:{self.port}",
            "JOGGER_CA_CERT_FILE": str(self.pki.ca),
            "JOGGER_USER_CERT_FILE": str(pair.cert),
            "JOGGER_USER_KEY_FILE": str(pair.key),
        }

    def connect(self, user: str = "alice") -> AbstractAsyncContextManager[JobsClient]:
        pair = self.pki.user(user)
        return open_client("localhost", self.port, ca=self.pki.ca, cert=pair.cert, key=pair.key)


def server_config(pki: Pki, state_dir: Path, **limits: int) -> ServerConfig:
    return ServerConfig(
        listen=[("127.0.0.1", 0)],
        state_dir=state_dir,
        ca_cert=pki.ca,
        cert=pki.server.cert,
        key=pki.server.key,
        grace=2.0,
        drain_timeout=2.0,
        limits=ManagerLimits(**limits),
    )


async def start_server(nursery: trio.Nursery, pki: Pki, config: ServerConfig) -> Server:
    """jogger-server in this process with ``config``, until ``nursery`` ends; returns once it
    listens (on the first address of ``config.listen``)."""
    bound = await nursery.start(serve, config)
    return Server("127.0.0.1", bound[0][1], pki, config.state_dir)
