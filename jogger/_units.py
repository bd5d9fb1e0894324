"""Sizes in bytes and spans of time, as people write them: 512M, 1.5G, 4096; 90s, 8h, 1h30m."""

import datetime
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


_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?[smhd])+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> datetime.timedelta:
    """``90s``, ``30m``, ``8h``, ``7d``, ``1h30m``: a unit on every number (a bare ``8``
    could be hours or seconds). ValueError if malformed; bounds are the caller's."""
    compact = text.strip().lower()
    if _DURATION.fullmatch(compact) is None:
        raise ValueError(f"{text!r} is not a duration (like 90s, 30m, 8h, 7d or 1h30m)")
    seconds = sum(float(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(compact))
    return datetime.timedelta(seconds=seconds)


def format_duration(seconds: float) -> str:
    """``90s``, ``15m``, ``2h``, ``1h30m``, ``1.5s``: as parse_duration reads it back."""
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)
