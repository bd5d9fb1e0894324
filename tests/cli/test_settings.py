"""Which setting wins (cli/settings.py): each on its own, from --host, then its JOGGER_*
variable, then the context in use (--context, JOGGER_CONTEXT, current-context), then the
default; and what each entry of --hosts connects to. The files exist but are not read."""

from pathlib import Path

import pytest

from jogger.cli.exits import CliError
from jogger.cli.settings import Settings, load, load_targets


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """An empty stand-in for each certificate and key, in ``env/`` and in ``conf/``."""
    for where in ("env", "conf/jogger/prod", "conf/jogger/dev"):
        (tmp_path / where).mkdir(parents=True)
        for name in ("ca.pem", "me.pem", "me-key.pem"):
            (tmp_path / where / name).touch()
    config = tmp_path / "conf" / "jogger" / "config.toml"
    config.write_text(
        'current-context = "dev"\n'
        "[contexts.prod]\n"
        'host = "prod.example:7000"\n'
        'ca = "prod/ca.pem"\ncert = "prod/me.pem"\nkey = "prod/me-key.pem"\n'
        "[contexts.dev]\n"
        'host = "dev.example"\n'
        'ca = "dev/ca.pem"\ncert = "dev/me.pem"\nkey = "dev/me-key.pem"\n'
        "[contexts.nohost]\n"
        'ca = "dev/ca.pem"\n'
    )
    config.chmod(0o600)
    return tmp_path


def environ(files: Path, **variables: str) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(files / "conf"), **variables}


def env_files(files: Path) -> dict[str, str]:
    return {
        "JOGGER_CA_CERT_FILE": str(files / "env" / "ca.pem"),
        "JOGGER_USER_CERT_FILE": str(files / "env" / "me.pem"),
        "JOGGER_USER_KEY_FILE": str(files / "env" / "me-key.pem"),
    }


def where(settings: Settings) -> tuple[str, int, str]:
    """The address, and the directory the CA came from."""
    return settings.host, settings.port, settings.ca.parent.name


def test_the_current_context_is_used_when_nothing_else_says(files: Path) -> None:
    assert where(load(None, environ=environ(files))) == ("dev.example", 7654, "dev")


def test_context_flag_then_variable_then_current_context(files: Path) -> None:
    assert where(load(None, "prod", environ(files, JOGGER_CONTEXT="dev"))) == (
        "prod.example",
        7000,
        "prod",
    )
    assert where(load(None, None, environ(files, JOGGER_CONTEXT="prod")))[0] == "prod.example"


def test_each_variable_wins_over_the_context_on_its_own(files: Path) -> None:
    settings = load(
        None,
        "prod",
        environ(files, JOGGER_HOST="env.example:1", JOGGER_CA_CERT_FILE=str(files / "env/ca.pem")),
    )
    assert where(settings) == ("env.example", 1, "env")
    assert settings.cert == files / "conf/jogger/prod/me.pem"  # the context's: no variable
    assert str(settings.sources["ca"]) == "JOGGER_CA_CERT_FILE"
    assert str(settings.sources["cert"]) == "the cert of context 'prod'"


def test_the_host_flag_wins_over_everything(files: Path) -> None:
    settings = load("flag.example:2", "prod", environ(files, JOGGER_HOST="env.example:1"))
    assert where(settings) == ("flag.example", 2, "prod")


def test_without_a_config_file_the_variables_and_defaults_do_as_before(files: Path) -> None:
    variables = {"XDG_CONFIG_HOME": str(files / "nowhere"), **env_files(files)}
    assert where(load(None, environ=variables)) == ("localhost", 7654, "env")


@pytest.mark.parametrize(
    ("context_flag", "variables", "message"),
    [
        ("staging", {}, "--context: no context 'staging' in "),
        (None, {"JOGGER_CONTEXT": "staging"}, "JOGGER_CONTEXT: no context 'staging' in "),
        ("nohost", {}, "JOGGER_USER_CERT_FILE is not set, and context 'nohost' names no cert"),
        (
            "prod",
            {"JOGGER_USER_KEY_FILE": "/nonexistent/key.pem"},
            "JOGGER_USER_KEY_FILE=/nonexistent/key.pem: no such file",
        ),
        ("dev", {"JOGGER_HOST": "a:b:c"}, "JOGGER_HOST: bad address 'a:b:c'"),
    ],
)
def test_what_cannot_be_used_is_a_usage_error_that_says_where_it_was_set(
    files: Path, context_flag: str | None, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(CliError) as caught:
        load(None, context_flag, environ(files, **variables))
    assert message in str(caught.value)
    assert caught.value.code == 2


def test_a_missing_file_named_by_a_context_says_which_context(files: Path) -> None:
    (files / "conf/jogger/prod/me-key.pem").unlink()
    with pytest.raises(CliError) as caught:
        load(None, "prod", environ(files))
    key = files / "conf/jogger/prod/me-key.pem"
    assert str(caught.value) == f"key = {key} in context 'prod': no such file"


def test_a_hosts_entry_that_names_a_context_brings_its_address_and_files(files: Path) -> None:
    variables = environ(files, JOGGER_HOST="env.example:1", **env_files(files))
    [prod, plain] = load_targets(["prod", "10.0.0.5:7001"], None, variables)
    assert (prod.name, where(prod.settings)) == ("prod", ("prod.example", 7000, "prod"))
    assert prod.where == "prod (prod.example:7000)"
    # Not a context: an address, with the certificates of the settings without --hosts.
    assert (plain.name, where(plain.settings)) == ("10.0.0.5:7001", ("10.0.0.5", 7001, "env"))
    assert plain.where == "10.0.0.5:7001"


def test_a_plain_hosts_entry_takes_the_current_contexts_files(files: Path) -> None:
    [plain] = load_targets(["web1"], None, environ(files))
    assert where(plain.settings) == ("web1", 7654, "dev")
    [plain] = load_targets(["web1"], "prod", environ(files))
    assert where(plain.settings) == ("web1", 7654, "prod")


def test_a_hosts_entry_whose_context_names_no_host_is_refused(files: Path) -> None:
    with pytest.raises(CliError, match="--hosts: context 'nohost' names no host"):
        load_targets(["prod", "nohost"], None, environ(files))
