"""Sizes in bytes, as people write them: 512M, 1.5G, 4096."""

import re

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``256M``, ``1.5G``, ``4096``: bytes, with binary units. ValueError if malformed."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size (like 512M or 2G)")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def format_size(n: int) -> str:
    """The shortest exact form: 256M, 1G; else with one decimal: 1.5G; else bytes."""
    for unit in ("T", "G", "M", "K"):
        if n >= _UNITS[unit] and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    for unit in ("T", "G", "M", "K"):
        if n >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.1f}{unit}"
    return str(n)
