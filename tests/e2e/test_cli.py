"""jog end to end: every command and every error path, through real processes and TLS."""

import json
import os
import pwd
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import BIN, Cli, launch, stop_server
from tests.pki import Pki
from tests.procs import PYTHON, SAYS_GOODBYE, alive_in_groups


def lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().splitlines()


def job_id_of(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode().strip()
    assert out.startswith("started: ")
    return out.split()[1]


async def test_start_status_list_stop(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "--", "sleep", "300"))
    status = await cli.jog("status", job)
    assert status.returncode == 0
    assert "state:   running" in status.stdout.decode()
    assert "run as:" not in status.stdout.decode()  # --run-as server: the server's own user
    listing = await cli.jog("list")
    assert job in listing.stdout.decode()
    stop = await cli.jog("stop", "--grace", "1", job)
    assert stop.stdout.decode().strip() == f"{job} stopped (signal SIGTERM)"
    again = await cli.jog("stop", job)
    assert again.stdout.decode().strip() == (
        f"{job} already exited with status: stopped (signal SIGTERM)"
    )
    as_json = json.loads((await cli.jog("status", "--json", job)).stdout)
    assert as_json["state"] == "stopped"
    assert as_json["signal"] == signal.SIGTERM
    assert as_json["argv"] == ["sleep", "300"]
    assert as_json["run_as"] is None
    listed = json.loads((await cli.jog("list", "--json")).stdout)
    assert [j["job_id"] for j in listed] == [job]


@pytest.mark.skipif(os.geteuid() != 0, reason="running jobs as nobody needs root")
async def test_status_shows_the_account_a_job_ran_as(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no local account nobody")
    server = await launch(pki, tmp_path / "state", nursery, "--run-as", "fixed")
    try:
        job = job_id_of(await server.jog("start", "--", "true"))
        shown = (await server.jog("status", job)).stdout.decode().splitlines()
        assert shown[1:3] == ["owner:   alice", f"run as:  nobody (uid {uid})"]
        as_json = json.loads((await server.jog("status", "--json", job)).stdout)
        assert as_json["run_as"] == {"name": "nobody", "uid": uid}
        [listed] = json.loads((await server.jog("list", "--json")).stdout)
        assert listed["run_as"] == {"name": "nobody", "uid": uid}
    finally:
        await stop_server(server.process)


async def test_list_shows_the_newest_jobs_first_and_pages(cli: Cli) -> None:
    jobs = [job_id_of(await cli.jog("start", "--", "true")) for _ in range(3)]
    listed = await cli.jog("list", "--json", "--limit", "2")
    assert [j["job_id"] for j in json.loads(listed.stdout)] == jobs[:0:-1]
    assert listed.stderr.decode() == "jog: showing the newest 2 jobs; --limit 0 shows all\n"
    every = await cli.jog("list", "--json", "--limit", "0")
    assert [j["job_id"] for j in json.loads(every.stdout)] == jobs[::-1]
    assert every.stderr == b""
    bad = await cli.jog("list", "--limit", "some")
    assert bad.returncode == 2
    assert b"not a non-negative integer" in bad.stderr


async def test_run_streams_output_and_exits_with_the_jobs_code(cli: Cli) -> None:
    result = await cli.jog("run", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert result.returncode == 7
    assert result.stdout == b"out\nerr\n"
    killed = await cli.jog("run", "--", "sh", "-c", "kill -9 $$")
    assert killed.returncode == 128 + 9
    assert "failed (signal SIGKILL)" in killed.stderr.decode()


async def test_output_reproduces_the_jobs_bytes_exactly(cli: Cli) -> None:
    code = "import os\nfor _ in range(40): os.write(1, bytes(range(256)) * 100)"
    job = job_id_of(await cli.jog("start", "--", PYTHON, "-c", code))
    result = await cli.jog("output", job)
    assert result.returncode == 0
    assert result.stdout == bytes(range(256)) * 100 * 40
    assert lines(result) == [f"jog: job {job} completed (exit code 0)"]
    partial = await cli.jog("output", "--no-follow", "--offset", "256", job)
    assert partial.stdout == (bytes(range(256)) * 100 * 40)[256:]
    assert partial.stderr == b""


async def follow(cli: Cli, job: str, *args: str) -> trio.Process:
    """``jog output [ARGS] JOB`` as a process, its stdout and stderr piped."""
    return await trio.lowlevel.open_process(
        [BIN / "jog", "output", *args, job],
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def wait_for_output(process: trio.Process, text: bytes) -> bytes:
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(20):
        while text not in seen:
            data = await process.stdout.receive_some()
            if not data:
                raise AssertionError(f"stdout ended without {text!r}: {seen!r}")
            seen += data
    return seen


async def test_ctrl_c_on_output_detaches_and_leaves_the_job_running(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "--", "sh", "-c", "echo hello; sleep 300"))
    follower = await follow(cli, job)
    await wait_for_output(follower, b"hello")
    follower.send_signal(signal.SIGINT)
    with trio.fail_after(20):
        assert await follower.wait() == 130
    assert follower.stderr is not None
    assert (await follower.stderr.receive_some()).decode() == (
        f"jog: detached; job {job} keeps running\n"
    )
    assert "running" in (await cli.jog("status", job)).stdout.decode()


async def test_ctrl_c_on_run_stops_the_job(cli: Cli) -> None:
    runner = await trio.lowlevel.open_process(
        [BIN / "jog", "run", "--", *SAYS_GOODBYE],
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    await wait_for_output(runner, b"ready")
    runner.send_signal(signal.SIGINT)
    rest = await wait_for_output(runner, b"goodbye")
    with trio.fail_after(20):
        assert await runner.wait() == 130
    assert rest.endswith(b"goodbye\n")
    listed = json.loads((await cli.jog("list", "--json")).stdout)
    assert [j["state"] for j in listed] == ["stopped"]


async def test_users_are_isolated_and_admins_read_everything(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "--", "sh", "-c", "echo mine; sleep 300"))
    bob = await cli.jog("status", job, user="bob")
    assert bob.returncode == 1
    assert lines(bob) == [f"jog: error: job {job} not found"]
    assert (await cli.jog("list", user="bob")).stdout == b""
    stop = await cli.jog("stop", job, user="bob")
    assert stop.returncode == 1
    nosy = await cli.jog("list", "--all", user="bob")
    assert nosy.returncode == 1
    assert lines(nosy) == ["jog: error: listing every user's jobs is for admins"]
    everyone = json.loads((await cli.jog("list", "--all", "--json", user="root")).stdout)
    assert [(j["job_id"], j["owner"]) for j in everyone] == [(job, "alice")]
    read = await cli.jog("output", "--no-follow", job, user="root")
    assert read.stdout == b"mine\n"


@pytest.mark.parametrize(
    ("args", "env_change", "code", "message"),
    [
        (
            ["list"],
            {"JOGGER_HOST": "127.0.0.1:1"},
            3,
            "jog: error: 127.0.0.1:1: cannot connect: Connection refused",
        ),
        (
            ["list"],
            {"JOGGER_USER_CERT_FILE": ""},
            2,
            "jog: error: JOGGER_USER_CERT_FILE is not set: export it as the path of your user "
            'certificate (with the development certificates, run eval "$(make -s gen-certs)" '
            "in the jogger checkout)",
        ),
        (
            ["list"],
            {"JOGGER_CA_CERT_FILE": "/nonexistent/ca.pem"},
            2,
            "jog: error: JOGGER_CA_CERT_FILE=/nonexistent/ca.pem: no such file",
        ),
        (
            ["list"],
            {"JOGGER_USER_KEY_FILE": "/etc/hostname"},
            2,
            "jog: error: JOGGER_USER_KEY_FILE=/etc/hostname: not a private key (no PEM "
            "'-----BEGIN PRIVATE KEY-----' block in it)",
        ),
        (
            ["list"],
            {"JOGGER_CA_CERT_FILE": "/etc/hostname"},
            2,
            "jog: error: JOGGER_CA_CERT_FILE=/etc/hostname: not a CA certificate (no PEM "
            "'-----BEGIN CERTIFICATE-----' block in it)",
        ),
        (
            ["list"],
            {"JOGGER_HOST": "https://localhost:7654"},
            2,
            "jog: error: JOGGER_HOST: bad address 'https://localhost:7654': write host:port, "
            "without https://",
        ),
        (
            ["list", "--host", "a:b:c"],
            {},
            2,
            "jog: error: --host: bad address 'a:b:c': write host:port, or [ipv6]:port",
        ),
        (
            ["run", "uname", "-a"],
            {},
            2,
            "jog: error: the job's command goes after --: jog run -- uname -a",
        ),
        (
            ["start", "--cwd", "/tmp", "/tmp"],
            {},
            2,
            "jog: error: the job's command goes after --: jog start --cwd /tmp -- /tmp",
        ),
        (
            ["start", "--memroy", "1G", "--", "true"],
            {},
            2,
            "jog: error: unrecognized arguments: --memroy 1G (see: jog start --help)",
        ),
        (
            ["stop"],
            {},
            2,
            "jog: error: the following arguments are required: ID (see: jog stop --help)",
        ),
        (
            ["status", "5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e"],
            {},
            1,
            "jog: error: job 5b4c1f5e-2f0c-4c38-9d8e-7f5b8a1d2c3e not found",
        ),
        (["status", "not-a-job"], {}, 1, "jog: error: job id 'not-a-job' is not a UUID"),
        (
            ["start", "--", "no-such-command-jogger"],
            {},
            1,
            "jog: error: 'no-such-command-jogger': command not found",
        ),
        (
            ["start", "--cwd", "/nonexistent", "--", "true"],
            {},
            1,
            "jog: error: cannot use working directory '/nonexistent': No such file or directory",
        ),
        (["stop", "--grace", "-1", "x"], {}, 2, "the grace period must be from 0 to 604800"),
        (["stop", "--grace", "inf", "x"], {}, 2, "the grace period must be from 0 to 604800"),
        (["stop", "--grace", "soon", "x"], {}, 2, "'soon' is not a number of seconds"),
        (["output", "--offset", "-1", "x"], {}, 2, "the offset cannot be negative"),
        (["output", "--offset", "1.5", "x"], {}, 2, "'1.5' is not a whole number of bytes"),
        (["start"], {}, 2, "start needs a command after --"),
        (["frobnicate"], {}, 2, "invalid choice: 'frobnicate'"),
    ],
)
async def test_errors_are_one_line_and_an_exit_code(
    cli: Cli, args: list[str], env_change: dict[str, str], code: int, message: str
) -> None:
    result = await cli.jog(*args, env=cli.env(**env_change))
    assert result.returncode == code
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert message in err


async def test_an_unknown_host_is_named_as_such(cli: Cli) -> None:
    result = await cli.jog("list", env=cli.env(JOGGER_HOST="no-such-host.invalid:7654"))
    assert result.returncode == 3
    err = result.stderr.decode()
    assert err.startswith("jog: error: no-such-host.invalid:7654: cannot connect: ")
    assert "Unknown error" not in err


def without_unbuffered(env: dict[str, str]) -> dict[str, str]:
    """A user's shell: our CI sets PYTHONUNBUFFERED=1, a newcomer's does not."""
    return {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}


@pytest.mark.parametrize("unbuffered", [False, True])
async def test_an_unwritable_stdout_is_one_line_and_exit_1(cli: Cli, unbuffered: bool) -> None:
    job = job_id_of(await cli.jog("start", "--", "echo", "hello"))
    env = without_unbuffered(cli.env())
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    full = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)
    try:
        for args in (["list"], ["status", job], ["output", job], ["--help"], ["list", "--help"]):
            with trio.fail_after(30):
                result = await trio.run_process(
                    [BIN / "jog", *args], env=env, stdout=full, capture_stderr=True, check=False
                )
            assert (args, result.returncode) == (args, 1)
            err = result.stderr.decode()
            assert (args, err) == (
                args,
                "jog: error: cannot write the output: No space left on device\n",
            )
    finally:
        os.close(full)


async def jog_into_closed_pipe(cli: Cli, *args: str, read: int = 10) -> tuple[int, bytes, str]:
    """``jog ARGS | head -c READ``, without a shell and without PYTHONUNBUFFERED: jog's exit
    code, what the reader got before it left, and jog's stderr."""
    reader, writer = os.pipe()
    try:
        process = await trio.lowlevel.open_process(
            [BIN / "jog", *args],
            env=without_unbuffered(cli.env()),
            stdout=writer,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(writer)
    try:
        got = b""
        try:
            with trio.fail_after(30):
                while len(got) < read:
                    await trio.lowlevel.wait_readable(reader)
                    data = os.read(reader, read - len(got))
                    if not data:
                        break
                    got += data
        finally:
            os.close(reader)  # the reader leaves, as head does
        assert process.stderr is not None
        with trio.fail_after(30):
            err = b"".join([chunk async for chunk in process.stderr])
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return code, got, err.decode()


async def test_a_closed_stdout_ends_jog_quietly_with_0_whatever_the_size(cli: Cli) -> None:
    big = job_id_of(
        await cli.jog("start", "--", "sh", "-c", "head -c 4000000 /dev/zero; sleep 300")
    )
    small = job_id_of(await cli.jog("start", "--", "echo", "hello"))
    for _ in range(20):
        listed = json.loads((await cli.jog("list", "--json")).stdout)
        if all(j["output_bytes"] for j in listed):
            break
        await trio.sleep(0.1)
    # The reader takes 10 bytes of 4 MB and leaves: jog is told at its next write.
    assert await jog_into_closed_pipe(cli, "output", big) == (0, b"\0" * 10, "")
    # It takes all 6 bytes of a small output: jog never sees the pipe closed.
    assert await jog_into_closed_pipe(cli, "output", "--no-follow", small) == (0, b"hello\n", "")
    # Leaving a live job's output detaches from it, as Ctrl-C does; the job runs on.
    assert "running" in (await cli.jog("status", big)).stdout.decode()
    # A reader gone before jog writes a word: the same, for every command that prints.
    for args in (["list"], ["status", small], ["output", small], ["--help"]):
        assert (args, await jog_into_closed_pipe(cli, *args, read=0)) == (args, (0, b"", ""))


async def test_a_closed_stdout_ends_a_jog_run_as_sigpipe_would(cli: Cli) -> None:
    code, got, err = await jog_into_closed_pipe(cli, "run", "--", "yes")
    assert (code, got, err) == (128 + signal.SIGTERM, b"y\ny\ny\ny\ny\n", "")
    listed = json.loads((await cli.jog("list", "--json")).stdout)
    assert [(j["argv"], j["state"], j["signal"]) for j in listed] == [(["yes"], "stopped", 15)]


async def test_a_rejected_certificate_is_named_in_the_error(cli: Cli) -> None:
    expired = cli.pki.user("expired")
    result = await cli.jog(
        "list",
        env=cli.env(JOGGER_USER_CERT_FILE=str(expired.cert), JOGGER_USER_KEY_FILE=str(expired.key)),
    )
    assert result.returncode == 3
    assert lines(result) == [
        f"jog: error: localhost:{cli.port}: the server rejected our client certificate "
        "(TLS alert: certificate expired)"
    ]


async def test_the_wrong_ca_or_key_says_what_to_check(cli: Cli) -> None:
    other_ca = cli.pki.ca.parent / "other-ca.pem"
    wrong_ca = await cli.jog("list", env=cli.env(JOGGER_CA_CERT_FILE=str(other_ca)))
    assert wrong_ca.returncode == 3
    assert lines(wrong_ca) == [
        f"jog: error: localhost:{cli.port}: we rejected the server's certificate: "
        "self-signed certificate in certificate chain; "
        f"is JOGGER_CA_CERT_FILE ({other_ca}) the CA that signed the server's certificate?"
    ]
    bob_key = cli.pki.user("bob").key
    mismatch = await cli.jog("list", env=cli.env(JOGGER_USER_KEY_FILE=str(bob_key)))
    assert mismatch.returncode == 2
    assert lines(mismatch) == [
        f"jog: error: JOGGER_USER_KEY_FILE={bob_key}: not the private key of the "
        f"certificate {cli.pki.user('alice').cert}"
    ]


async def test_help_shows_the_environment_and_exit_codes(cli: Cli) -> None:
    result = await cli.jog("--help")
    text = result.stdout.decode()
    for needed in (
        "JOGGER_HOST",
        "JOGGER_CA_CERT_FILE",
        "JOGGER_USER_CERT_FILE",
        "JOGGER_USER_KEY_FILE",
        "exit codes",
        "130",
    ):
        assert needed in text


async def test_server_shutdown_finishes_live_streams_and_stops_jobs(cli: Cli) -> None:
    job = job_id_of(await cli.jog("start", "--", *SAYS_GOODBYE))
    pid = json.loads((await cli.jog("status", "--json", job)).stdout)["pid"]
    follower = await follow(cli, job)
    await wait_for_output(follower, b"ready")
    cli.process.send_signal(signal.SIGTERM)
    rest = await wait_for_output(follower, b"goodbye")
    with trio.fail_after(20):
        code = await follower.wait()
        assert follower.stderr is not None
        final = (await follower.stderr.receive_some()).decode()
        assert code == 0, final
        assert await cli.process.wait() == 0
    assert rest.endswith(b"goodbye\n")
    assert final == f"jog: job {job} stopped (exit code 0, reason: server-shutdown)\n"
    assert alive_in_groups({pid}) == []
    assert any("shut down" in line for line in cli.log)


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")
async def test_limits_asked_for_by_jog_are_enforced_and_shown(cli: Cli) -> None:
    if "cgroups=none" in next(line for line in cli.log if "listening on" in line):
        pytest.skip("the server found no cgroup backend here")
    start = await cli.jog(
        "start", "--memory", "64M", "--pids", "32", "--cpu", "0.5", "--", "sleep", "30"
    )
    job = job_id_of(start)
    shown = (await cli.jog("status", job)).stdout.decode()
    assert "limits:  cpu 0.5 cores, memory 64M, pids 32" in shown
    assert "cgroup:  cgroup" in shown
    as_json = json.loads((await cli.jog("status", "--json", job)).stdout)
    assert as_json["limits"]["memory"] == 64 << 20
    assert as_json["cgroup"] in ("cgroup1", "cgroup2")
    await cli.jog("stop", "--grace", "1", job)
    hog = await cli.jog("run", "--memory", "32M", "--", PYTHON, "-c", "b = bytearray(1 << 30)")
    assert hog.returncode == 128 + 9
    assert "reason: oom" in hog.stderr.decode()
    too_much = await cli.jog("start", "--memory", "1T", "--", "true")
    assert too_much.returncode == 1
    assert "memory 1T is over the server's maximum" in too_much.stderr.decode()


async def test_bad_limits_are_usage_errors(cli: Cli) -> None:
    for flag, value, message in [
        ("--memory", "lots", "'lots' is not a size"),
        ("--cpu", "0", "at least 0.01 cores"),
        ("--pids", "-3", "'-3' is not a positive whole number"),
        ("--io-weight", "20000", "'20000' is not a weight from 1 to 10000"),
    ]:
        result = await cli.jog("start", flag, value, "--", "true")
        assert result.returncode == 2
        assert message in result.stderr.decode()
