"""The sd_notify protocol on real AF_UNIX datagram sockets: what NOTIFY_SOCKET names, what
each message says, and a service manager that is not there."""

import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jogger.server.notify import Notifier


@pytest.fixture
def receiver() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound at a short path (sun_path holds 108 bytes), and that path."""
    directory = tempfile.mkdtemp(prefix="jn-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        sock.settimeout(10)
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def fields(sock: socket.socket) -> dict[str, str]:
    message = sock.recv(4096).decode()
    assert message.endswith("\n")
    return dict(line.split("=", 1) for line in message.splitlines())


def test_the_variable_leaves_the_environment_as_the_notifier_is_made(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    environ = {"NOTIFY_SOCKET": path, "PATH": "/bin"}
    notify = Notifier.from_environment(environ)
    assert environ == {"PATH": "/bin"}
    notify.ready("listening on 127.0.0.1:7654")
    assert fields(sock) == {"READY": "1", "STATUS": "listening on 127.0.0.1:7654"}


def test_an_at_sign_names_the_abstract_namespace() -> None:
    name = f"jogger-test-{uuid.uuid4()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        notify = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        notify.stopping("shutting down: stopping the jobs")
        assert fields(sock) == {"STOPPING": "1", "STATUS": "shutting down: stopping the jobs"}


def test_a_reload_is_reloading_then_ready_with_the_status_of_before(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    notify = Notifier(path)
    notify.ready("listening on [::1]:7654")
    fields(sock)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading = fields(sock)
    assert reloading.pop("RELOADING") == "1"
    # systemd's clock: CLOCK_MONOTONIC in microseconds, as Type=notify-reload expects.
    assert before <= int(reloading.pop("MONOTONIC_USEC")) <= after
    assert reloading == {"STATUS": "reloading"}
    notify.reloaded()
    assert fields(sock) == {"READY": "1", "STATUS": "listening on [::1]:7654"}


def test_a_reload_before_ready_says_nothing(receiver: tuple[socket.socket, str]) -> None:
    # A SIGHUP while the server still starts must not make it ready early.
    sock, path = receiver
    notify = Notifier(path)
    notify.reloading()
    notify.reloaded()
    notify.status("after")
    assert fields(sock) == {"STATUS": "after"}


def test_a_newline_in_a_status_cannot_add_a_field(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    Notifier(path).status("a\nREADY=1")
    assert fields(sock) == {"STATUS": "a READY=1"}


def test_no_variable_or_a_foreign_address_notifies_nobody(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert not Notifier.from_environment({}).enabled
    environ = {"NOTIFY_SOCKET": "vsock:2:1234"}
    with caplog.at_level(logging.WARNING):
        assert not Notifier.from_environment(environ).enabled
    assert environ == {}
    assert "NOTIFY_SOCKET=vsock:2:1234 is not an AF_UNIX socket address" in caplog.text


def test_a_service_manager_that_is_gone_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notify = Notifier(str(tmp_path / "nobody-listens"))
    with caplog.at_level(logging.WARNING):
        notify.ready("listening")
    assert "cannot notify the service manager (READY): No such file or directory" in caplog.text
