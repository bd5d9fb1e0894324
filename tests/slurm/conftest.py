"""A real single-node Slurm cluster (munged, slurmctld, slurmd) for the Slurm executor's
tests, started once per run by slurm-up.sh and stopped by slurm-down.sh (both here, from
../shared/recipes/, owned by this project now).

Run by ``make test-slurm`` (root: it installs Debian's Slurm packages and starts daemons),
which sets JOGGER_SLURM_TESTS=1; ``make test`` does not collect these tests.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
NODE = "jogtest"
"""The test cluster's node name: its own cgroup directory (slurm_jogtest), beside any other."""

collect_ignore_glob = [] if os.environ.get("JOGGER_SLURM_TESTS") == "1" else ["test_*.py"]


@pytest.fixture(scope="session")
def slurm() -> Iterator[Path]:
    """The cluster's directory, with SLURM_CONF set for this process and its children."""
    if os.geteuid() != 0:
        pytest.skip("a Slurm cluster needs root (its daemons, and sbatch --uid)")
    where = Path(tempfile.mkdtemp(prefix="jogger-slurm-", dir="/tmp"))
    where.chmod(0o755)  # the jobs' users run their scripts from its spool
    env = {**os.environ, "SLURM_NODENAME": NODE}
    up = subprocess.run(
        [HERE / "slurm-up.sh", where / "cluster"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if up.returncode != 0:
        shutil.rmtree(where, ignore_errors=True)
        pytest.fail(f"slurm-up.sh failed:\n{up.stderr[-3000:]}")
    os.environ["SLURM_CONF"] = str(where / "cluster" / "slurm.conf")
    try:
        yield where
    finally:
        os.environ.pop("SLURM_CONF", None)
        subprocess.run([HERE / "slurm-down.sh", where / "cluster"], timeout=300, check=False)
        shutil.rmtree(where, ignore_errors=True)
