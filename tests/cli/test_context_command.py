"""``jog context list`` and ``jog context use`` as the real jog runs them, on a config file in
a temporary XDG_CONFIG_HOME; and the ``--context`` and ``--hosts`` refusals that come before
any connection."""

import subprocess
import sys
from pathlib import Path

import pytest

JOG = Path(sys.executable).parent / "jog"

CONFIG = """\
# mine
[contexts.prod]
host = "prod.example:7000"

[contexts.dev]
host = "localhost:7654"
key = "dev-key.pem"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "jogger" / "config.toml"
    path.parent.mkdir()
    path.write_text(CONFIG)
    path.chmod(0o600)
    return path


def jog(config: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOG, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={"XDG_CONFIG_HOME": str(config.parent.parent), "PATH": "/usr/bin:/bin", **variables},
        timeout=30,
        check=False,
    )


def test_list_shows_the_contexts_and_marks_the_one_in_use(config: Path) -> None:
    listed = jog(config, "context", "list")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.splitlines() == [
        "CURRENT  NAME  HOST",
        "         prod  prod.example:7000",
        "         dev   localhost:7654",
    ]
    assert "*        dev " in jog(config, "--context", "dev", "context", "list").stdout
    assert "*        prod" in jog(config, "context", "list", JOGGER_CONTEXT="prod").stdout


def test_use_writes_current_context_and_keeps_the_rest(config: Path) -> None:
    used = jog(config, "context", "use", "prod")
    assert (used.returncode, used.stdout, used.stderr) == (0, "current context: prod\n", "")
    assert config.read_text() == 'current-context = "prod"\n' + CONFIG
    assert "*        prod" in jog(config, "context", "list").stdout
    again = jog(config, "context", "use", "dev", JOGGER_CONTEXT="prod")
    assert config.read_text() == 'current-context = "dev"\n' + CONFIG
    assert again.stderr == (
        "jog: JOGGER_CONTEXT=prod is set, and wins over current-context where it is\n"
    )


def test_use_of_an_unknown_name_is_a_usage_error_and_changes_nothing(config: Path) -> None:
    refused = jog(config, "context", "use", "staging")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"jog: error: no context 'staging' in {config} (jog context list shows them)\n"
    )
    assert config.read_text() == CONFIG


def test_a_config_others_may_read_that_names_keys_is_warned_about_and_still_used(
    config: Path,
) -> None:
    config.chmod(0o644)
    listed = jog(config, "context", "list")
    assert listed.returncode == 0
    assert "dev" in listed.stdout
    assert listed.stderr == (
        f"jog: warning: {config} names private keys and others may read it (chmod 600 {config})\n"
    )


def test_without_a_file_there_are_no_contexts(tmp_path: Path) -> None:
    listed = jog(tmp_path / "jogger" / "config.toml", "context", "list")
    assert (listed.returncode, listed.stdout) == (0, "")
    assert listed.stderr == f"jog: no contexts: {tmp_path}/jogger/config.toml has none\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--context", "staging", "list"], "--context: no context 'staging' in "),
        (["list", "--context", "staging"], "--context: no context 'staging' in "),
        (["run", "--hosts", "a,,b", "--", "true"], "'a,,b' has an empty entry"),
        (["run", "--hosts", "a,b,a", "--", "true"], "'a' is named twice"),
        (["list", "--hosts", "a", "--host", "b"], "--host and --hosts do not go together"),
        (["run", "--hosts", "a,b", "-t", "--", "sh"], "-t takes one host"),
        (["run", "--hosts", "prod,b", "--", "true"], "JOGGER_CA_CERT_FILE is not set"),
    ],
)
def test_refusals_before_connecting_are_one_line_usage_errors(
    config: Path, args: list[str], message: str
) -> None:
    result = jog(config, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("jog: error: ")
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
