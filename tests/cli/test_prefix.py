"""The lines of ``jog run --hosts``: whole, each with its host's name, the bytes untouched."""

from jogger.cli.prefix import MAX_LINE, LinePrefixer


def test_whole_lines_get_the_prefix_and_the_rest_waits_for_its_end() -> None:
    lines = LinePrefixer("web1")
    assert lines.feed(b"one\ntw") == b"web1: one\n"
    assert lines.feed(b"o\nthr") == b"web1: two\n"
    assert lines.feed(b"ee") == b""
    assert lines.feed(b"\n\n") == b"web1: three\nweb1: \n"
    assert lines.end() == b""


def test_a_last_line_without_its_newline_is_ended_with_one() -> None:
    lines = LinePrefixer("10.0.0.5:7654")
    assert lines.feed(b"done\nno newline") == b"10.0.0.5:7654: done\n"
    assert lines.end() == b"10.0.0.5:7654: no newline\n"
    assert lines.end() == b""


def test_bytes_are_left_as_they_are_but_for_the_prefix() -> None:
    lines = LinePrefixer("a")
    data = bytes(range(256)) + b"\r\n"  # one b"\n" inside (10), and the last
    assert lines.feed(data) == b"a: " + data[:11] + b"a: " + data[11:]


def test_an_unending_line_goes_out_in_pieces_of_max_line() -> None:
    lines = LinePrefixer("a")
    out = b"".join(lines.feed(b"x" * 1000) for _ in range(3 * MAX_LINE // 1000))
    assert out.split(b"\n")[:-1] == [b"a: " + b"x" * MAX_LINE] * 2
    assert lines.end() == b"a: " + b"x" * (3 * MAX_LINE // 1000 * 1000 - 2 * MAX_LINE) + b"\n"


def test_a_name_with_control_characters_is_escaped() -> None:
    assert LinePrefixer("a\x1b[2Jb").feed(b"x\n") == b"a\\x1b[2Jb: x\n"
