"""host:port as users write it: ``localhost:7654``, ``10.0.0.5``, ``[::1]:7654``."""

DEFAULT_PORT = 7654


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Split ``text`` into (host, port); raises ValueError with a message for users."""
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    scheme, sep, rest = text.partition("://")
    if sep:
        raise ValueError(f"bad address {text!r}: write host:port, without {scheme}://")
    if "/" in text:
        raise ValueError(f"bad address {text!r}: write host:port, without a path")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}: expected [ipv6]:port")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        if not _is_ipv6(text):
            raise ValueError(f"bad address {text!r}: write host:port, or [ipv6]:port")
        host, port_text = text, ""  # a bare IPv6 address
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"bad address {text!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad address {text!r}: port must be a number from 0 to 65535")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::1]:7654``), as parse_address
    reads it back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ipv6(text: str) -> bool:
    import ipaddress  # noqa: PLC0415 - rarely needed; jog's start-up time matters

    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
