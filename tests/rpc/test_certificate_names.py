"""How the audit log names a certificate: serial and fingerprint, as openssl prints them."""

import hashlib

import pytest

from jogger.rpc.auth import fingerprint_text, serial_text


@pytest.mark.parametrize(
    ("serial", "text"),
    [
        (0, "00"),
        (10, "0A"),
        (0xABC, "0ABC"),
        (0x1234, "1234"),
        (-0x1F, "-1F"),
        (2**159, "8" + "0" * 39),
    ],
)
def test_a_serial_is_uppercase_hex_in_whole_bytes(serial: int, text: str) -> None:
    assert serial_text(serial) == text


def test_a_fingerprint_is_the_sha256_of_the_der_in_colon_separated_pairs() -> None:
    der = b"not really a certificate"
    digest = hashlib.sha256(der).hexdigest().upper()
    assert fingerprint_text(der) == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
