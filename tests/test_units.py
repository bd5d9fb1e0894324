"""jogger/_units.py: sizes (parse_size, format_size) and durations as people write them."""

import datetime

import pytest

from jogger._units import format_duration, format_size, parse_duration, parse_size

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("0", 0),
        ("1K", K),
        ("512k", 512 * K),
        ("256M", 256 * M),
        ("2G", 2 * G),
        ("3T", 3 * T),
        ("1.5G", 3 * G // 2),
        ("0.5K", 512),
        ("2GiB", 2 * G),
        ("2GB", 2 * G),
        ("64mib", 64 * M),
        ("10 M", 10 * M),
        ("  64M\n", 64 * M),
        ("7B", 7),
    ],
)
def test_parse_size_reads_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_drops_a_fraction_of_a_byte() -> None:
    assert parse_size("1.1K") == 1126  # 1126.4 bytes


@pytest.mark.parametrize(
    "text", ["", "M", "G2", "-1M", "+1M", "1.5.5G", "1P", "1e6", "1,5G", "12 34", "1MM", "abc"]
)
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0"),
        (1000, "1000"),
        (K, "1K"),
        (256 * M, "256M"),
        (3 * G // 2, "1536M"),  # exact beats shorter
        (3 * G // 2 + 1, "1.5G"),  # else one decimal
        (T, "1T"),
    ],
)
def test_format_size_is_the_shortest_form(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize("size", [1, K, 5 * M + 7 * K, 64 * G, 2 * T])
def test_an_exact_size_survives_format_then_parse(size: int) -> None:
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("8h", 8 * 3600),
        ("7d", 7 * 86400),
        ("1h30m", 5400),
        ("1.5h", 5400),
        (" 8H\n", 8 * 3600),
        ("0s", 0),
    ],
)
def test_parse_duration_reads_seconds_minutes_hours_and_days(text: str, seconds: int) -> None:
    assert parse_duration(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "8", "h", "8x", "-1h", "+1h", "1e3s", "8 h", "1h 30m", "8hh"])
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1m30s"), (900, "15m"), (7200, "2h"), (5400, "1h30m"), (86400, "1d"), (2, "2s")],
)
def test_format_duration_writes_what_parse_duration_reads(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == datetime.timedelta(seconds=seconds)


def test_format_duration_keeps_a_fraction_in_seconds() -> None:
    assert format_duration(1.5) == "1.5s"
    assert format_duration(90.5) == "90.5s"
