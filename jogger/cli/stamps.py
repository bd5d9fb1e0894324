"""``jog output --timestamps``: each line prefixed with the time its first byte was written.

The server cuts its chunks where the time changes (OutputChunk.time); a line takes the time
of the chunk that holds its first byte, so a line longer than a chunk, or written in several
writes, gets one prefix, at its start. Lines end at ``\\n``; bytes are passed through
unchanged, binary ones too (a prefix follows each ``\\n`` wherever it is). A last line with
no newline gets its prefix all the same. The prefix: RFC 3339 in UTC with microseconds and
a space, ``2026-12-07T05:01:02.123456Z ``; ``-`` and a space where the time is unknown.
"""

import datetime

from ..v1 import jobs_pb2

UNKNOWN = b"- "


def stamp(chunk: jobs_pb2.OutputChunk) -> bytes:
    """The prefix for lines that begin in ``chunk``."""
    if not chunk.HasField("time"):
        return UNKNOWN
    when = datetime.datetime.fromtimestamp(chunk.time.seconds, datetime.UTC)
    return b"%s.%06dZ " % (when.strftime("%Y-%m-%dT%H:%M:%S").encode(), chunk.time.nanos // 1000)


class Stamper:
    """Prefixes lines across chunks (and across reconnects: it keeps whether the last byte
    given ended a line)."""

    def __init__(self) -> None:
        self._line_start = True

    def __call__(self, chunk: jobs_pb2.OutputChunk) -> bytes:
        data = chunk.data
        if not data:
            return b""
        prefix = stamp(chunk)
        # Every newline but a last one starts a line here; a last one, in the next chunk.
        body = data[:-1].replace(b"\n", b"\n" + prefix) + data[-1:]
        if self._line_start:
            body = prefix + body
        self._line_start = data.endswith(b"\n")
        return body
