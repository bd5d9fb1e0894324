import socket
from pathlib import Path

import pytest
import trio

from jogger.rpc.client import open_client
from jogger.server.main import serve
from tests.pki import Pki
from tests.servers import server_config


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_server_listens_on_exactly_the_addresses_asked_for(pki: Pki, tmp_path: Path) -> None:
    config = server_config(pki, tmp_path / "state")
    config = type(config)(**{**config.__dict__, "listen": [("127.0.0.1", 0), ("::1", 0)]})
    alice = pki.user("alice")
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve, config)
        assert [host for host, _ in bound] == ["127.0.0.1", "::1"]
        for host, port in bound:
            async with open_client(host, port, ca=pki.ca, cert=alice.cert, key=alice.key) as c:
                assert await c.list() == ([], False)
        # Not bound to every interface: the IPv4 listener's port is not open on IPv6.
        if bound[0][1] != bound[1][1]:
            with pytest.raises(OSError, match="all attempts to connect"):
                await trio.open_tcp_stream("::1", bound[0][1])
        nursery.cancel_scope.cancel()  # the test is over: shut the server down
