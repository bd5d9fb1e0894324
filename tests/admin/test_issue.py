"""`jogger certs issue`: short-lived client certificates from the CA, and the input it refuses."""

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from jogger.rpc.auth import identify_client
from tests.admin.conftest import files_of, jogger


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.mark.parametrize(("ttl", "lifetime"), [("8h", 8 * 3600), ("90m", 5400), ("2d", 172800)])
def test_issue_makes_a_certificate_that_ends_after_the_ttl(
    ca_dir: Path, ttl: str, lifetime: int
) -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    issued = jogger("certs", "issue", "--user", "bob", "--ttl", ttl, "--out", ca_dir)
    after = datetime.datetime.now(datetime.UTC)
    assert issued.returncode == 0, issued.stderr
    cert = load(ca_dir / "bob.pem")
    span = datetime.timedelta(seconds=lifetime)
    assert before + span <= cert.not_valid_after_utc <= after + span
    assert cert.not_valid_before_utc <= before
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "bob"
    ca = load(ca_dir / "ca.pem")
    identity = identify_client(cert.public_bytes(Encoding.DER), [ca])
    assert (identity.user, identity.admin) == ("bob", False)
    assert stat.S_IMODE((ca_dir / "bob-key.pem").stat().st_mode) == 0o600
    where = ca_dir.resolve()
    assert issued.stdout.splitlines() == [
        f"export JOGGER_CA_CERT_FILE={where / 'ca.pem'}",
        f"export JOGGER_USER_CERT_FILE={where / 'bob.pem'}",
        f"export JOGGER_USER_KEY_FILE={where / 'bob-key.pem'}",
    ]
    serial = f"serial 0x{cert.serial_number:x}"
    assert issued.stderr.startswith(f"wrote {ca_dir / 'bob.pem'}: user bob, {serial}, valid until")


def test_issue_admin_makes_an_administrator_with_a_fresh_random_serial(ca_dir: Path) -> None:
    first = jogger("certs", "issue", "--user", "root", "--admin", "--ttl", "1h", "--out", ca_dir)
    assert first.returncode == 0, first.stderr
    assert "user root (admin)" in first.stderr
    cert = load(ca_dir / "root.pem")
    identity = identify_client(cert.public_bytes(Encoding.DER), [load(ca_dir / "ca.pem")])
    assert (identity.user, identity.admin) == ("root", True)
    again = jogger("certs", "issue", "--user", "root", "--admin", "--ttl", "1h", "--out", ca_dir)
    assert again.returncode == 0, again.stderr
    serials = {cert.serial_number, load(ca_dir / "root.pem").serial_number}
    assert len(serials) == 2
    assert all(0 < serial < 1 << 159 for serial in serials)  # 159 random bits, as RFC 5280 asks


def test_issue_takes_the_directory_before_or_after_its_name(ca_dir: Path) -> None:
    issued = jogger("certs", "--out", ca_dir, "issue", "--user", "bob")
    assert issued.returncode == 0, issued.stderr
    assert (ca_dir / "bob.pem").exists()
    cert = load(ca_dir / "bob.pem")
    # The default: a working day.
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=7) < left <= datetime.timedelta(hours=8)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--ttl", "0s"], "argument --ttl: '0s': a certificate needs a lifetime above 0"),
        (["--ttl", "0h0m"], "a certificate needs a lifetime above 0"),
        (["--ttl", "30s"], "'30s' is shorter than the least, 1m"),
        (["--ttl", "367d"], "'367d' is longer than the most, 366d"),
        (["--ttl", "8"], "'8' is not a duration (like 90s, 30m, 8h, 7d or 1h30m)"),
        (["--ttl=-1h"], "'-1h' is not a duration"),
        (["--ttl", "8 hours"], "'8 hours' is not a duration"),
        (["--user", "Bob Smith"], "argument --user: 'Bob Smith' is not a username"),
        (["--user", "ca"], "'ca' would overwrite ca.pem, a file of the CA, the server or the CRL"),
        (["--user", "server-key"], "'server-key' would overwrite server-key.pem"),
    ],
)
def test_issue_refuses_bad_input_in_one_line_and_changes_nothing(
    ca_dir: Path, args: list[str], error: str
) -> None:
    before = files_of(ca_dir)
    user = [] if "--user" in args else ["--user", "bob"]
    refused = jogger("certs", "issue", *user, *args, "--out", ca_dir)
    assert refused.returncode == 2
    assert error in refused.stderr.splitlines()[-1]
    assert "Traceback" not in refused.stderr
    assert files_of(ca_dir) == before


def test_issue_refuses_a_ttl_that_outlives_the_ca(ca_dir: Path) -> None:
    before = files_of(ca_dir)
    refused = jogger("certs", "issue", "--user", "bob", "--ttl", "366d", "--out", ca_dir)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"jogger: error: the CA in {ca_dir} expires on ")
    assert refused.stderr.endswith("before this certificate would: a shorter --ttl, or a new CA\n")
    assert files_of(ca_dir) == before


def test_issue_without_a_ca_says_where_it_looked(tmp_path: Path) -> None:
    refused = jogger("certs", "issue", "--user", "bob", "--out", tmp_path)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"jogger: error: no CA in {tmp_path} (ca.pem and ca-key.pem): jogger certs --out "
        f"{tmp_path} makes one, or --out names the directory of yours\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_development_options_are_not_taken_by_a_subcommand(ca_dir: Path) -> None:
    refused = jogger("certs", "--out", ca_dir, "--user", "carol", "issue", "--user", "bob")
    assert refused.returncode == 2
    assert "--user: an option of jogger certs alone" in refused.stderr
    assert not (ca_dir / "bob.pem").exists()
