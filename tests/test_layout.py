"""The layering the README promises, checked on real imports."""

import subprocess
import sys

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
