"""Mutual TLS contexts for both ends.

ECDSA P-256 keys and SHA-256 signatures throughout (see certs.py). TLS 1.3 is preferred;
TLS 1.2 is allowed with ECDHE-ECDSA AEAD suites only. ALPN is ``h2`` on both sides, session
tickets are off, and VERIFY_X509_STRICT is on (so certificates need subject and authority
key identifiers). OpenSSL's own checks are not enough for client certificates: auth.py
checks them again after the handshake.
"""

import ssl
from pathlib import Path

TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ]
)


def _base_context(purpose: ssl.Purpose, ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose, cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["h2"])
    return context


def server_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Requires a client certificate signed by ``ca``."""
    context = _base_context(ssl.Purpose.CLIENT_AUTH, ca, cert, key)
    context.check_hostname = False
    return context


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Trusts only ``ca`` (not the system's roots) and checks the server's name in its SAN."""
    context = _base_context(ssl.Purpose.SERVER_AUTH, ca, cert, key)
    context.check_hostname = True
    return context
