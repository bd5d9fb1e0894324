"""contrib/systemd: the unit and its drop-in, checked by the real ``systemd-analyze verify``,
and the choices the README promises (jobs kept across a restart, readiness by notify).

systemd is not process 1 on the test machines, so the unit cannot be started here; its
protocol is tested in tests/e2e/test_sd_notify.py, its capabilities in
tests/contrib/test_service_sandbox.py.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jogger.server.config import parser
from tests.contrib.units import DROP_IN, INSTALLED_SERVER, UNIT, exec_start, one, settings

SERVER = Path(sys.executable).parent / "jogger-server"


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """systemd-analyze, installed from Debian if missing (root only), else a skip."""
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("systemd-analyze is not installed and cannot be (not root, or no apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "systemd"]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"apt-get could not install systemd: {done.stderr.strip()[-300:]}")
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.skip("Debian's systemd installed no systemd-analyze")
    return found


def installed_copy(directory: Path, *, extra: str = "") -> Path:
    """The unit and its drop-in as an install lays them out, in ``directory``, with this
    checkout's jogger-server in place of /opt/jogger's (verify checks that ExecStart= is
    there and executable); ``extra`` is appended to the drop-in."""
    unit = directory / "jogger.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_SERVER, str(SERVER)))
    drop_ins = directory / "jogger.service.d"
    drop_ins.mkdir()
    (drop_ins / DROP_IN.name).write_text(
        DROP_IN.read_text().replace(INSTALLED_SERVER, str(SERVER)) + extra
    )
    return unit


def verify(systemd_analyze: str, unit: Path) -> tuple[int, list[str]]:
    """systemd-analyze verify's exit code, and its lines about our files (all of its lines
    when it failed). It reads the drop-ins in the unit's own directory."""
    done = subprocess.run(
        [systemd_analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = (done.stdout + done.stderr).splitlines()
    ours = [line for line in lines if "jogger" in line]
    return done.returncode, ours if done.returncode == 0 else lines


def test_systemd_analyze_verify_finds_nothing_to_say_about_the_unit_and_its_drop_in(
    systemd_analyze: str, tmp_path: Path
) -> None:
    code, lines = verify(systemd_analyze, installed_copy(tmp_path))
    assert (code, lines) == (0, [])


def test_verify_would_report_an_unknown_directive(systemd_analyze: str, tmp_path: Path) -> None:
    # So that the test above proves something: a misspelt directive is only a warning
    # (exit 0), which it would see.
    code, lines = verify(systemd_analyze, installed_copy(tmp_path, extra="KillMod=process\n"))
    assert code == 0
    assert any("Unknown key 'KillMod'" in line for line in lines), lines


def test_the_unit_keeps_the_jobs_across_a_restart() -> None:
    unit = settings(UNIT)
    assert one(unit, "KillMode") == "process"
    assert one(unit, "Delegate") == "yes"
    argv = exec_start(unit)
    assert argv[0] == INSTALLED_SERVER
    assert parser().parse_args(argv[1:]).on_shutdown == "keep"


def test_the_drop_in_stops_the_jobs_on_every_stop() -> None:
    both = settings(UNIT, DROP_IN)
    assert one(both, "KillMode") == "mixed"
    assert len(both["ExecStart"]) == 1
    assert parser().parse_args(exec_start(both)[1:]).on_shutdown == "stop"


def test_the_unit_waits_for_readiness_and_reloads_with_sighup() -> None:
    unit = settings(UNIT)
    assert (one(unit, "Type"), one(unit, "NotifyAccess")) == ("notify", "main")
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_every_flag_of_the_units_command_lines_is_jogger_servers() -> None:
    # parse_args exits (SystemExit) on a flag jogger-server does not have.
    for values in (settings(UNIT), settings(UNIT, DROP_IN)):
        parser().parse_args(exec_start(values)[1:])
