"""OutputRequest's window (tail, since, timestamps) to the engine's, and its pieces back to
OutputChunks."""

from ..engine import OutputWindow, Piece
from ..v1 import jobs_pb2


def window_of(request: jobs_pb2.OutputRequest) -> OutputWindow | None:
    """The window the request asks for; None if it asks for none (the plain stream)."""
    if not (request.HasField("tail") or request.HasField("since") or request.timestamps):
        return None
    since = request.since
    return OutputWindow(
        tail=request.tail if request.HasField("tail") else None,
        since_ns=since.seconds * 1_000_000_000 + since.nanos if request.HasField("since") else None,
        timestamps=request.timestamps,
    )


def chunk_of(piece: Piece) -> jobs_pb2.OutputChunk:
    chunk = jobs_pb2.OutputChunk(offset=piece.offset, data=piece.data)
    if piece.time_ns is not None:
        chunk.time.FromNanoseconds(piece.time_ns)
    return chunk
