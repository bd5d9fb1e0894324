"""One host's output as whole lines with the host's name in front, ``web1: ...``, for
``--hosts``. Pure: bytes in, bytes out.

Lines end at b"\\n" and are otherwise left as they are (binary output stays binary, a
b"\\r\\n" keeps its b"\\r"). What a host has sent of a line is held until its end, at most
MAX_LINE bytes: past that, it goes out as a line of its own, so that a job that never writes
a newline costs no more memory than one that does.
"""

from .._text import escape

MAX_LINE = 64 << 10


class LinePrefixer:
    def __init__(self, name: str) -> None:
        self._prefix = escape(name).encode() + b": "
        self._rest = b""

    def feed(self, data: bytes) -> bytes:
        """The lines that ``data`` completes, each with the prefix and its newline; keeps
        the unfinished last one (up to MAX_LINE bytes) for the next call."""
        head, newline, rest = (self._rest + data).rpartition(b"\n")
        out = b""
        if newline:
            out = self._prefix + head.replace(b"\n", b"\n" + self._prefix) + b"\n"
        if len(rest) >= MAX_LINE:
            cut = len(rest) - len(rest) % MAX_LINE
            out += b"".join(
                self._prefix + rest[at : at + MAX_LINE] + b"\n" for at in range(0, cut, MAX_LINE)
            )
            rest = rest[cut:]
        self._rest = rest
        return out

    def end(self) -> bytes:
        """The unfinished last line, with the prefix and a newline; b"" if there is none."""
        rest, self._rest = self._rest, b""
        return self._prefix + rest + b"\n" if rest else b""
