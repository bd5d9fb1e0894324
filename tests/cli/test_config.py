"""jog's config file (cli/config.py): where it is, what it may say, the warning for a file
others may read, and ``current-context`` written back without touching the rest."""

import os
import tomllib
from pathlib import Path

import pytest

from jogger.cli.config import (
    Config,
    ConfigError,
    config_path,
    load,
    parse,
    toml_string,
    use,
    with_current,
)

EXAMPLE = b"""\
# contexts of mine
current-context = "dev"   # the one I use most

[contexts.prod]
host = "jobs.example.com:7654"
ca = "prod/ca.pem"
cert = "~/certs/alice.pem"
key = "/etc/jogger/alice-key.pem"

[contexts.dev]
host = "localhost:7654"
"""


def write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_the_file_is_under_xdg_config_home_else_under_dot_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", "/home/alice")
    assert config_path({"XDG_CONFIG_HOME": "/xdg"}) == Path("/xdg/jogger/config.toml")
    for unusable in ({}, {"XDG_CONFIG_HOME": ""}, {"XDG_CONFIG_HOME": "relative/dir"}):
        assert config_path(unusable) == Path("/home/alice/.config/jogger/config.toml")


def test_files_are_taken_from_the_files_directory_and_tilde_is_home(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", "/home/alice")
    config = parse(EXAMPLE, Path("/conf/jogger/config.toml"))
    assert config.current == "dev"
    prod = config.contexts["prod"]
    assert prod.host == "jobs.example.com:7654"
    assert prod.ca == Path("/conf/jogger/prod/ca.pem")
    assert prod.cert == Path("/home/alice/certs/alice.pem")
    assert prod.key == Path("/etc/jogger/alice-key.pem")
    dev = config.contexts["dev"]
    assert (dev.host, dev.ca, dev.cert, dev.key) == ("localhost:7654", None, None, None)


def test_no_file_is_no_contexts(tmp_path: Path) -> None:
    assert load(tmp_path / "none.toml") == Config(tmp_path / "none.toml", {}, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"[contexts.prod]\ncert_file = 'a.pem'\n", "context 'prod': unknown setting 'cert_file'"),
        (b"host = 'a:1'\n", "unknown setting 'host' (jog reads current-context and"),
        (b"current-context = 3\n", "current-context must be a string"),
        (b"[contexts.prod]\nhost = 7654\n", "context 'prod': host must be a non-empty string"),
        (b"[contexts.prod]\nca = ''\n", "context 'prod': ca must be a non-empty string"),
        (b"contexts = 'prod'\n", "contexts must be tables"),
        (b"[contexts]\nprod = 'a:1'\n", "context 'prod' must be a table"),
        (b"[contexts.prod\n", "not valid TOML"),
        (b"\xff\n", "not valid TOML"),
    ],
)
def test_what_jog_does_not_understand_is_an_error_that_names_it(
    tmp_path: Path, text: bytes, message: str
) -> None:
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert caught.value.code == 2


@pytest.mark.parametrize(
    ("mode", "names_a_key", "warned"),
    [(0o644, True, True), (0o640, True, True), (0o600, True, False), (0o644, False, False)],
)
def test_a_file_others_may_read_that_names_keys_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: int, names_a_key: bool, warned: bool
) -> None:
    text = EXAMPLE if names_a_key else b"[contexts.dev]\nhost = 'localhost:7654'\n"
    path = write(tmp_path / "config.toml", text, mode)
    config = load(path)
    assert sorted(config.contexts) == (["dev", "prod"] if names_a_key else ["dev"])
    expected = (
        f"jog: warning: {path} names private keys and others may read it (chmod 600 {path})\n"
    )
    assert capsys.readouterr().err == (expected if warned else "")


def test_current_context_replaces_its_own_line_and_nothing_else() -> None:
    changed = with_current(EXAMPLE, "prod")
    assert changed == EXAMPLE.replace(
        b'current-context = "dev"   # the one I use most\n', b'current-context = "prod"\n'
    )


def test_current_context_is_added_first_when_there_is_none() -> None:
    text = b"# a comment: current-context = 'x'\n[contexts.a]\nhost = 'a:1'\n"
    assert with_current(text, "a") == b'current-context = "a"\n' + text


@pytest.mark.parametrize("name", ['with "quotes"', "back\\slash", "tab\there", "del\x7f", "ü"])
def test_any_name_is_written_as_toml_reads_it_back(name: str) -> None:
    assert tomllib.loads(f"x = {toml_string(name)}")["x"] == name


def test_use_rewrites_the_file_in_place_with_its_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "jogger" / "config.toml", EXAMPLE, 0o640)
    use(load(path), "prod")
    assert load(path).current == "prod"
    assert path.read_bytes() == with_current(EXAMPLE, "prod")
    assert path.stat().st_mode & 0o777 == 0o640
    assert os.listdir(path.parent) == ["config.toml"]  # no temporary file left


def test_use_refuses_a_name_that_is_not_a_context(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", EXAMPLE)
    with pytest.raises(ConfigError, match=r"no context 'staging' in .* \(jog context list"):
        use(load(path), "staging")
    assert path.read_bytes() == EXAMPLE


def test_use_leaves_a_file_it_cannot_rewrite_safely_as_it_was(tmp_path: Path) -> None:
    text = b'current-context = """\ndev"""\n[contexts.dev]\nhost = "a:1"\n[contexts.b]\n'
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError, match='set current-context = "b" by hand'):
        use(load(path), "b")
    assert path.read_bytes() == text
