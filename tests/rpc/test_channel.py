"""What the client says when TLS or the socket fails: which side rejected what."""

import ssl

import pytest

from jogger.rpc.failures import (
    PeerBrokeProtocol,
    ServerCertificateRejected,
    TransportError,
    describe_failure,
    failure_error,
)

VERIFY_FAILED = (
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
    "in certificate chain (_ssl.c:1006)"
)


@pytest.mark.parametrize(
    ("failure", "described"),
    [
        (
            ssl.SSLError(
                1,
                "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate "
                "required (_ssl.c:2580)",
            ),
            "the server requires a client certificate and got none",
        ),
        (
            ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:2580)"),
            "the server rejected our client certificate (TLS alert: unknown ca)",
        ),
        (
            ssl.SSLError(
                1,
                "[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate "
                "expired (_ssl.c:2580)",
            ),
            "the server rejected our client certificate (TLS alert: certificate expired)",
        ),
        (
            EOFError(),
            "the server closed the connection during TLS setup (see the server's log)",
        ),
        (
            ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)"),
            "the server closed the connection during TLS setup (see the server's log)",
        ),
        (
            ssl.SSLCertVerificationError(1, VERIFY_FAILED),
            "we rejected the server's certificate: self-signed certificate in certificate chain",
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            "[Errno 104] Connection reset by peer",
        ),
        (OSError(), "OSError"),
    ],
)
def test_a_failure_says_which_side_rejected_what(failure: BaseException, described: str) -> None:
    assert describe_failure(failure) == described


def test_a_server_certificate_we_rejected_keeps_openssls_reason() -> None:
    error = failure_error(ssl.SSLCertVerificationError(1, VERIFY_FAILED))
    assert isinstance(error, ServerCertificateRejected)
    assert error.detail == "self-signed certificate in certificate chain"


def test_a_server_breaking_the_protocol_is_named() -> None:
    error = failure_error(PeerBrokeProtocol("invalid frame"))
    assert type(error) is TransportError
    assert str(error) == (
        "the server sent a response we refuse (invalid frame); we closed the connection"
    )


def test_any_other_failure_is_described() -> None:
    error = failure_error(EOFError())
    assert type(error) is TransportError
    assert str(error) == describe_failure(EOFError())
