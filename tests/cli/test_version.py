"""``--version`` on the three programs: the version of the installed distribution (one
place: pyproject.toml), looked up only when asked."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
VERSION = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
    "version"
]


@pytest.mark.parametrize("program", ["jog", "jogger-server", "jogger"])
def test_each_program_prints_its_name_and_the_projects_version(program: str) -> None:
    done = subprocess.run(
        [BIN / program, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{program} {VERSION}\n", "")


def test_jog_reads_the_metadata_only_when_asked_for_its_version() -> None:
    # importlib.metadata takes tens of milliseconds to import: every jog start would pay.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, jogger.cli.main as m; m.parser(); "
            "print('importlib.metadata' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "False\n"), done.stderr
