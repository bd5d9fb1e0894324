"""frames.py's FrameBuffer against h2's own, on the same bytes cut in every way."""

import os

import h2.connection
import h2.frame_buffer
import pytest
from h2.exceptions import FrameTooLargeError, ProtocolError
from hyperframe.frame import DataFrame, HeadersFrame, PingFrame, SettingsFrame, WindowUpdateFrame
from purerpc.grpclib.config import GRPCConfiguration

from jogger.rpc.frames import FrameBuffer
from jogger.rpc.protocol import PREFACE, ProtocolMachine


def wire_frames() -> bytes:
    data = DataFrame(1)
    data.data = os.urandom(70_000)
    padded = DataFrame(3)
    padded.flags.add("PADDED")
    padded.pad_length = 7
    padded.data = b"padded body"
    headers = HeadersFrame(5)
    headers.flags.add("END_HEADERS")
    headers.data = b"\x82"
    ping = PingFrame(0)
    ping.opaque_data = b"12345678"
    window = WindowUpdateFrame(1)
    window.window_increment = 1000
    return b"".join(f.serialize() for f in (SettingsFrame(0), data, padded, headers, ping, window))


def parse(buffer: h2.frame_buffer.FrameBuffer, data: bytes, cut: int) -> list[str]:
    buffer.max_frame_size = 1 << 20
    frames: list[str] = []
    for at in range(0, len(data), cut):
        buffer.add_data(memoryview(data)[at : at + cut])
        frames.extend(repr(f) + repr(getattr(f, "data", b"")) for f in buffer)
    return frames


@pytest.mark.parametrize("cut", [1, 9, 10, 4096, 65_536, 1 << 20])
def test_frames_come_out_as_h2s_own_buffer_gives_them_however_the_bytes_are_cut(
    cut: int,
) -> None:
    data = wire_frames()
    ours = parse(FrameBuffer(), data, cut)
    assert len(ours) == 6
    assert ours == parse(h2.frame_buffer.FrameBuffer(), data, 1 << 20)


def test_a_server_checks_the_preface_first() -> None:
    data = PREFACE + wire_frames()
    assert len(parse(FrameBuffer(server=True), data, 7)) == 6
    with pytest.raises(ProtocolError):
        parse(FrameBuffer(server=True), b"GET / HTTP/1.1\r\n" + data, 7)


def test_an_oversized_frame_is_refused_from_its_header_before_its_body_arrives() -> None:
    buffer = FrameBuffer()
    buffer.max_frame_size = 16 << 10
    big = DataFrame(1)
    big.data = b"x" * ((16 << 10) + 1)
    buffer.add_data(big.serialize()[:9])
    with pytest.raises(FrameTooLargeError):
        next(buffer)


def test_a_data_frame_is_sent_as_hyperframe_would_with_or_without_padding() -> None:
    plain = DataFrame(1)
    plain.data = b"body"
    assert plain.serialize() == b"\x00\x00\x04\x00\x00\x00\x00\x00\x01body"
    padded = DataFrame(1)
    padded.flags.add("PADDED")
    padded.pad_length = 2
    padded.data = b"body"
    assert padded.serialize() == b"\x00\x00\x07\x00\x08\x00\x00\x00\x01\x02body\x00\x00"


def answering_machine() -> ProtocolMachine:
    """A server's machine with a call open on stream 1, its response headers sent."""
    client = ProtocolMachine(GRPCConfiguration(client_side=True))
    client.initiate_connection()
    client.start_request(1, "https", "jogger.v1.Jobs", "Output", "x", "localhost", None, "+proto")
    server = ProtocolMachine(GRPCConfiguration(client_side=False))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.receive_data(h2_data_to_send(client.h2_connection))
    server.start_response(1, "+proto")
    server.data_to_send()
    return server


def h2_data_to_send(connection: h2.connection.H2Connection) -> bytes:
    return bytes(connection.data_to_send())


def test_a_data_frame_sent_header_first_is_the_frame_h2_sends_and_counts_the_same() -> None:
    body = os.urandom(3000)
    ours, theirs = answering_machine(), answering_machine()
    before = theirs.h2_connection.local_flow_control_window(1)
    ours.queue_data_header(1, memoryview(body))
    theirs.send_data(1, body)
    assert bytes(ours.data_to_send()) + body == bytes(theirs.data_to_send())
    for machine in (ours, theirs):
        assert machine.h2_connection.local_flow_control_window(1) == before - 3000


def test_a_data_frame_over_the_peers_frame_size_is_refused_with_nothing_queued() -> None:
    machine = answering_machine()
    before = machine.h2_connection.local_flow_control_window(1)
    too_big = machine.h2_connection.max_outbound_frame_size + 1
    with pytest.raises(FrameTooLargeError):
        machine.queue_data_header(1, memoryview(bytes(too_big)))
    assert not machine.data_to_send()
    assert machine.h2_connection.local_flow_control_window(1) == before
