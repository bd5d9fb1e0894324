"""What jog suggests when it rejected the server's certificate, or the server rejected ours
(OpenSSL's own words in)."""

from pathlib import Path

import pytest

from jogger.cli.reach import _client_certificate_hint, _server_certificate_hint
from jogger.cli.settings import Settings

SETTINGS = Settings("jobs.example", 7654, Path("/ca.pem"), Path("/u.pem"), Path("/u-key.pem"))


@pytest.mark.parametrize(
    ("detail", "hint"),
    [
        (
            "Hostname mismatch, certificate is not valid for 'jobs.example'",
            "its certificate does not name jobs.example: connect by a name it holds",
        ),
        (
            "IP address mismatch, certificate is not valid for '10.0.0.5'",
            "its certificate does not name jobs.example: connect by a name it holds",
        ),
        ("certificate has expired", "its certificate has expired: the server needs a new one"),
        (
            "unable to get local issuer certificate",
            "is JOGGER_CA_CERT_FILE (/ca.pem) the CA that signed the server's certificate?",
        ),
    ],
)
def test_a_rejected_server_certificate_gets_a_hint(detail: str, hint: str) -> None:
    assert _server_certificate_hint(detail, SETTINGS) == hint


def test_a_revoked_client_certificate_is_named_with_where_it_was_set() -> None:
    alert = "the server rejected our client certificate (TLS alert: certificate revoked)"
    assert _client_certificate_hint(alert, SETTINGS) == (
        "; JOGGER_USER_CERT_FILE=/u.pem has been revoked: ask the server's operator for a new "
        "certificate"
    )
    other = "the server rejected our client certificate (TLS alert: unknown ca)"
    assert _client_certificate_hint(other, SETTINGS) == ""
