"""The real `jogger` command, run as a process against a CA it made."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def jogger(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "jogger", *args], capture_output=True, text=True, check=False, timeout=60
    )


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    """A directory with a CA, a server certificate and alice's, as `jogger certs` makes."""
    out = tmp_path / "certs"
    made = jogger("certs", "--out", out, "--user", "alice")
    assert made.returncode == 0, made.stderr
    return out


def files_of(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}
