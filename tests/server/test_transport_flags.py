"""jogger-server's transport flags reach TransportLimits, and bad values are refused."""

import pytest

from jogger.server.config import ConfigError, load
from tests.pki import Pki


def tls(pki: Pki) -> list[str]:
    return ["--ca-cert", str(pki.ca), "--cert", str(pki.server.cert), "--key", str(pki.server.key)]


def test_every_transport_flag_reaches_the_limits(pki: Pki) -> None:
    config = load(
        [
            *tls(pki),
            *("--max-connections", "400", "--max-connections-per-user", "9"),
            *("--max-calls-per-user", "33", "--handshake-timeout", "2.5"),
            *("--max-handshakes-per-host", "7", "--max-handshakes-per-network", "70"),
        ]
    )
    limits = config.transport
    assert (limits.max_connections, limits.max_handshakes) == (400, 100)
    assert (limits.max_connections_per_user, limits.max_calls_per_user) == (9, 33)
    assert limits.handshake_timeout == 2.5
    assert (limits.max_handshakes_per_host, limits.max_handshakes_per_network) == (7, 70)


@pytest.mark.parametrize(
    "flag", ["--max-handshakes-per-host", "--max-handshakes-per-network", "--max-connections"]
)
def test_a_count_that_is_not_positive_is_refused_by_name(pki: Pki, flag: str) -> None:
    name = flag.removeprefix("--")
    with pytest.raises(ConfigError, match=f"--{name} must be a positive number"):
        load([*tls(pki), flag, "0"])
