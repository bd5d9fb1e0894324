"""host:port as users write it, and as we write it back."""

import pytest

from jogger.rpc.address import DEFAULT_PORT, format_address, parse_address


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("localhost:7654", ("localhost", 7654)),
        ("  jobs.example:80 ", ("jobs.example", 80)),
        ("10.0.0.5", ("10.0.0.5", DEFAULT_PORT)),
        ("10.0.0.5:0", ("10.0.0.5", 0)),
        ("[::1]:7000", ("::1", 7000)),
        ("[::1]", ("::1", DEFAULT_PORT)),
        ("::1", ("::1", DEFAULT_PORT)),
        ("fe80::1:7654", ("fe80::1:7654", DEFAULT_PORT)),  # not split at its last colon
    ],
)
def test_an_address_is_a_host_and_a_port(text: str, parsed: tuple[str, int]) -> None:
    assert parse_address(text) == parsed


def test_the_default_port_is_the_callers() -> None:
    assert parse_address("jobs.example", default_port=1) == ("jobs.example", 1)


@pytest.mark.parametrize(
    ("text", "told"),
    [
        ("", "empty address"),
        ("   ", "empty address"),
        ("https://jobs.example:7654", "without https://"),
        ("jobs.example:7654/jobs", "without a path"),
        ("[::1", r"expected \[ipv6\]:port"),
        ("[::1]7654", r"expected \[ipv6\]:port"),
        ("a:b:c", r"write host:port, or \[ipv6\]:port"),
        (":7654", "no host"),
        ("[]:7654", "no host"),
        ("jobs.example:65536", "port must be a number from 0 to 65535"),
        ("jobs.example:-1", "port must be a number from 0 to 65535"),
        ("jobs.example:http", "port must be a number from 0 to 65535"),
    ],
)
def test_a_bad_address_says_what_to_write(text: str, told: str) -> None:
    with pytest.raises(ValueError, match=told):
        parse_address(text)


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [
        ("localhost", 7654, "localhost:7654"),
        ("10.0.0.5", 0, "10.0.0.5:0"),
        ("::1", 7654, "[::1]:7654"),
        ("fe80::1", 22, "[fe80::1]:22"),
    ],
)
def test_an_address_is_written_as_it_is_read(host: str, port: int, text: str) -> None:
    assert format_address(host, port) == text
    assert parse_address(text) == (host, port)
