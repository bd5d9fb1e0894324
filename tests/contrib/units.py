"""contrib/systemd's files, read as systemd reads them (as far as the tests need)."""

import shlex
from pathlib import Path

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
UNIT = CONTRIB / "jogger.service"
DROP_IN = CONTRIB / "stop-jobs.conf"
INSTALLED_SERVER = "/opt/jogger/bin/jogger-server"
"""Where the unit expects jogger-server (README: a virtualenv in /opt/jogger)."""


def settings(*paths: Path, section: str = "Service") -> dict[str, list[str]]:
    """Each key of ``section`` and its values in order, over the unit and then its drop-ins;
    an empty assignment resets the list, as ``ExecStart=`` does in a drop-in."""
    found: dict[str, list[str]] = {}
    for path in paths:
        current = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                current = line.strip("[]")
                continue
            if current != section:
                continue
            key, _, value = line.partition("=")
            values = found.setdefault(key, [])
            if value:
                values.append(value)
            else:
                values.clear()
    return found


def one(values: dict[str, list[str]], key: str) -> str:
    """The setting that counts: the last assignment."""
    return values[key][-1]


def exec_start(values: dict[str, list[str]]) -> list[str]:
    """ExecStart=, split as systemd splits it (no variables in ours)."""
    return shlex.split(one(values, "ExecStart"))
