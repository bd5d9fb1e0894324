"""The Slurm executor's rules that need no cluster: what it refuses before anything is
submitted, how limits map, and the batch script (run here with sh, as a node would)."""

import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jogger import Account, InvalidRequest, JobLimits
from jogger.engine.executor import Spec
from jogger.engine.isolation import ALL, Isolation
from jogger.engine.slurm.commands import Final
from jogger.engine.slurm.executor import SlurmExecution, SlurmExecutor, SlurmOptions, _script
from jogger.engine.status import Input
from jogger.engine.times import TimeIndex, times_path


def executor(tmp_path: Path) -> SlurmExecutor:
    return SlurmExecutor(SlurmOptions(partition="p", qos="q"), run_dir=tmp_path, grew=print)


def spec(**kwargs: object) -> Spec:
    fields: dict[str, object] = {
        "job_id": "0123456789abcdef",
        "owner": "alice",
        "argv": ("true",),
        "cwd": None,
        "env": {"PATH": "/usr/bin:/bin"},
        "account": None,
        "limits": JobLimits(),
    }
    return Spec(**{**fields, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"input": Input.PIPE}, "jog run -n"),
        ({"input": Input.TERMINAL}, "jog run -n"),
        ({"isolation": Isolation(ALL)}, "--isolate is for local servers"),
        ({"argv": ("A=b", "x")}, "must not contain '='"),
    ],
)
def test_what_slurm_cannot_give_is_refused(
    tmp_path: Path, changed: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        executor(tmp_path).check(spec(**changed))


@pytest.mark.parametrize(
    ("asked", "name"),
    [
        (JobLimits(pids=5), "pids"),
        (JobLimits(io_weight=5), "io-weight"),
        (JobLimits(cpu_weight=5), "cpu-weight"),
    ],
)
def test_limits_slurm_cannot_enforce_are_refused_not_dropped(
    tmp_path: Path, asked: JobLimits, name: str
) -> None:
    with pytest.raises(InvalidRequest, match=f"cannot enforce a {name} limit"):
        executor(tmp_path).limits(asked, JobLimits())


def test_defaults_fill_in_cpu_and_memory_only(tmp_path: Path) -> None:
    defaults = JobLimits(cpu=1.0, memory=1 << 30, pids=4096, io_weight=100)
    got = executor(tmp_path).limits(JobLimits(memory=64 << 20), defaults)
    assert got == JobLimits(cpu=1.0, memory=64 << 20)


def test_options_map_the_account_limits_and_policy(tmp_path: Path) -> None:
    account = Account("nobody", 65534, 65534, (65534,), "/nonexistent")
    options = executor(tmp_path)._options_for(
        spec(account=account, limits=JobLimits(cpu=1.5, memory=100 * 10**6)), Path("/s/l.log")
    )
    assert "--cpus-per-task=2" in options
    assert "--mem=96M" in options  # 100 MB is 95.4 MiB: rounded up, never down
    assert "--chdir=/" in options  # a home that is not there: /, as the local executor
    assert {"--partition=p", "--qos=q", "--no-requeue", "--export=NONE"} <= set(options)
    if not account.is_current():
        assert {"--uid=65534", "--gid=65534"} <= set(options)


def test_the_script_runs_the_argv_with_exactly_the_jobs_environment(tmp_path: Path) -> None:
    weird = "a b $c \"d\" 'e' \\ `f` \n g"
    script = tmp_path / "job.sh"
    script.write_text(_script(spec(env={"PATH": "/usr/bin:/bin", "WEIRD": weird})))
    show = 'printf "%s|" "$WEIRD" "$@"; printf "\\n"; env'
    done = subprocess.run(
        ["sh", str(script), "sh", "-c", show, "zero", "", "$y"],
        env={"SLURM_JOB_ID": "42", "LEAK": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    shown, _, env = done.stdout.partition("|\n")
    assert shown == f"{weird}||$y"  # $0 is "zero"; then "" and "$y", as given
    names = {line.split("=", 1)[0] for line in env.splitlines() if "=" in line}
    assert names <= {"PATH", "WEIRD", "SLURM_JOB_ID", "PWD", "SHLVL", "_"}  # sh adds PWD
    assert "LEAK" not in names
    assert "SLURM_JOB_ID=42" in env.splitlines()


@pytest.mark.parametrize(("timeout", "minutes"), [(1.0, 1), (60.0, 1), (90.0, 2), (7200.0, 120)])
def test_a_timeout_is_slurms_time_in_whole_minutes_rounded_up(
    tmp_path: Path, timeout: float, minutes: int
) -> None:
    options = executor(tmp_path)._options_for(spec(timeout=timeout), Path("/s/l.log"))
    assert f"--time={minutes}" in options


def test_a_job_without_a_timeout_gets_the_partitions_time_limit(tmp_path: Path) -> None:
    options = executor(tmp_path)._options_for(spec(), Path("/s/l.log"))
    assert not any(option.startswith("--time") for option in options)


def test_the_watch_records_growth_it_sees_in_the_time_index(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_bytes(b"")
    execution = SlurmExecution(executor(tmp_path), "7", "job", log)
    execution.index_growth()  # nothing yet: no record
    assert not times_path(log).exists()
    log.write_bytes(b"one\n")
    execution.index_growth()
    execution.index_growth()  # no growth since: no second record
    with log.open("ab") as more:
        more.write(b"two\n")
    execution.index_growth()
    index = TimeIndex.open(times_path(log))
    assert index is not None
    with index:
        assert [index.record(i)[0] for i in range(len(index))] == [0, 4]
    # A server that adopts the job takes the log's size as covered: what was written while
    # none watched carries the time of the record before it.
    with log.open("ab") as more:
        more.write(b"three\n")
    adopted = SlurmExecution(executor(tmp_path), "7", "job", log)
    adopted.index_growth()
    with log.open("ab") as more:
        more.write(b"four\n")
    adopted.index_growth()
    index = TimeIndex.open(times_path(log))
    assert index is not None
    with index:
        assert [index.record(i)[0] for i in range(len(index))] == [0, 4, 14]


def test_a_stop_whose_kill_came_after_the_term_had_ended_the_job_is_stopped(
    tmp_path: Path,
) -> None:
    # Slurm tells of an end a poll or more after it: the stopper's grace can run out, and
    # its KILL be asked for, after the TERM ended the job. Only SIGKILL's end is a kill.
    log = tmp_path / "job.log"
    log.write_bytes(b"")
    ended_at = datetime.now(UTC)
    for final_signal, killed in ((signal.SIGTERM, False), (signal.SIGKILL, True)):
        execution = SlurmExecution(executor(tmp_path), "7", "job", log)
        execution._sent_term = execution._sent_kill = True  # the stopper's TERM, then KILL
        execution.ended(Final("CANCELLED", "", 0, final_signal, ended_at))
        end = execution._end
        assert end is not None
        assert end.killed(stopper_sent_kill=True) is killed
        assert end.state().value == ("killed" if killed else "stopped")
