"""The layering the README promises, checked on real imports."""

import subprocess
import sys

import pytest

IMPORT_THE_CLI = """
import importlib, pkgutil, sys
import jogger.cli.main, jogger.cli.commands as commands
for module in pkgutil.iter_modules(commands.__path__):
    importlib.import_module("jogger.cli.commands." + module.name)
print(sorted(name for name in sys.modules if name.startswith("jogger.engine")))
"""


def test_jog_does_not_import_the_engine() -> None:
    # `jog` talks to a server; the engine (and its imports) would only slow every start.
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_THE_CLI],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


IMPORT_A_PACKAGE = """
import importlib, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(module.name)
forbidden = sys.argv[2:]
print(sorted(
    name for name in sys.modules if any(name == f or name.startswith(f + ".") for f in forbidden)
))
"""


def loaded_by(package: str, *forbidden: str) -> str:
    """What of ``forbidden`` a fresh interpreter has loaded after importing every module of
    ``package``, as a printed sorted list."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_A_PACKAGE, package, *forbidden],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_transport_imports_neither_the_engine_nor_the_server() -> None:
    # rpc/ carries calls; the servicers that know the engine live in server/.
    assert loaded_by("jogger.rpc", "jogger.engine", "jogger.server") == "[]"


def test_the_engine_knows_nothing_of_the_network_or_the_programs() -> None:
    assert loaded_by("jogger.engine", "jogger.rpc", "jogger.server", "jogger.cli") == "[]"


@pytest.mark.parametrize("package", ["jogger.engine", "jogger.rpc", "jogger.cli"])
def test_only_the_server_imports_prometheus_client(package: str) -> None:
    # The engine is embeddable and the transport a library; jog's start-up must not pay.
    assert loaded_by(package, "prometheus_client") == "[]"


def test_jogger_server_imports_prometheus_client_only_when_asked_for_metrics() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, jogger.server.main; print('prometheus_client' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("package", "module"),
    [("jogger.rpc", "jogger.rpc.server"), ("jogger.engine", "jogger.engine.cgroups.v2")],
)
def test_the_checks_import_every_module(package: str, module: str) -> None:
    # A check that imported nothing would pass for ever.
    assert f"'{module}'" in loaded_by(package, package)


def test_the_engine_names_are_still_there_on_first_use() -> None:
    import jogger  # noqa: PLC0415 - the point is what this import does

    assert jogger.JobManager.__module__ == "jogger.engine.manager"
    assert jogger.SpawnError.__name__ == "SpawnError"


def test_open_job_manager_is_there_on_first_use_beside_job_manager() -> None:
    import jogger  # noqa: PLC0415 - the point is what this import does
    import jogger.engine  # noqa: PLC0415

    assert jogger.open_job_manager is jogger.engine.open_job_manager
    assert jogger.open_job_manager.__module__ == "jogger.engine.manager"
    assert "open_job_manager" in jogger.__all__
