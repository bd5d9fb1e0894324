"""h2's frame buffer, without its copies: the HTTP/2 frames in the bytes a peer sends.

h2 3.x keeps what has arrived in one ``bytes`` object: it appends each read to it (a copy of
everything buffered) and cuts each frame off its front (another). With 64 KiB reads and
128 KiB frames that is several copies of every byte; with reads and frames of a megabyte,
as an output stream wants them, it is quadratic. This one appends to a bytearray and
deletes frames from its front, which CPython does without moving the rest, and refuses an
oversized frame from its header, before its body has been buffered.

Sending, hyperframe copies each DATA frame's body to join it with its padding; we send none,
and this module makes it skip that copy when there is none (for every h2 connection in the
process, as purerpc's own patches of h2 do).
"""

from typing import Any

import h2.frame_buffer
from h2.exceptions import FrameDataMissingError, ProtocolError
from hyperframe.exceptions import InvalidFrameError
from hyperframe.frame import DataFrame, Frame

HEADER = 9
"""Bytes of an HTTP/2 frame header."""

_serialize_data_body = DataFrame.serialize_body


def _unpadded_body(self: DataFrame) -> Any:
    # hyperframe joins the body with its (empty) padding: a copy of every byte sent.
    if "PADDED" not in self.flags and type(self.data) is bytes:
        return self.data
    return _serialize_data_body(self)


DataFrame.serialize_body = _unpadded_body


class FrameBuffer(h2.frame_buffer.FrameBuffer):  # type: ignore[misc]
    """A drop-in for h2's ``H2Connection.incoming_buffer``: h2 sets ``max_frame_size``
    before each ``add_data`` and iterates for the frames."""

    def __init__(self, server: bool = False) -> None:
        super().__init__(server=server)
        self._buffer = bytearray()
        self._preamble: bytes = self._preamble  # (h2 is untyped)

    def add_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (copied: the caller may reuse its buffer)."""
        if self._preamble_len:
            taken = min(self._preamble_len, len(data))
            if self._preamble[:taken] != bytes(data[:taken]):
                raise ProtocolError("Invalid HTTP/2 preamble.")
            data = data[taken:]
            self._preamble_len -= taken
            self._preamble = self._preamble[taken:]
        self._buffer += data

    def next(self) -> Any:
        buffer = self._buffer
        while True:
            if len(buffer) < HEADER:
                raise StopIteration
            try:
                frame, length = Frame.parse_frame_header(bytes(buffer[:HEADER]))
            except (InvalidFrameError, ValueError) as exc:
                raise ProtocolError(f"Invalid frame header received: {exc}") from None
            # From the header alone: never buffer the body of a frame we will refuse.
            self._validate_frame_length(length)
            if len(buffer) < HEADER + length:
                raise StopIteration
            if frame is not None:
                # Parsed from a view: hyperframe copies what it keeps (tobytes), and the view
                # is let go before the buffer changes size.
                with memoryview(buffer) as view, view[HEADER : HEADER + length] as body:
                    try:
                        frame.parse_body(body)
                    except InvalidFrameError:
                        raise FrameDataMissingError("Frame data missing or invalid") from None
            # Cheap: CPython deletes a bytearray's head by moving its start, not the bytes.
            del buffer[: HEADER + length]
            frame = self._update_header_buffer(frame)
            if frame is not None:
                return frame
            # A frame of an unknown type, or one of a header block: on to the next.

    def __next__(self) -> Any:
        return self.next()
