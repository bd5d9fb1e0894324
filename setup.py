"""Builds jogger-supervise, the per-job supervisor (jogger/engine/supervise.c), on install.

It is a program, not an extension module, but building it as one gives it the same path
through every kind of install (a wheel, or ``pip install -e``, which builds in place): the
build_ext below compiles and links it as an executable, named jogger/engine/jogger-supervise.

The wheel holds that program and no extension module: it is tagged for any Python 3 on this
platform (py3-none-linux_x86_64), not for the one Python that built it.
"""

import os
from typing import Any

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext
from setuptools.errors import LinkError

SUPERVISOR = "jogger.engine.jogger-supervise"


class BuildSupervisor(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        # Asked with the full name, and with its last part alone (get_ext_fullpath).
        if fullname == SUPERVISOR or fullname == SUPERVISOR.rsplit(".", 1)[1]:
            return os.path.join(*fullname.split("."))
        return str(super().get_ext_filename(fullname))  # type: ignore[no-untyped-call]

    def build_extension(self, ext: Any) -> None:
        if ext.name != SUPERVISOR:
            super().build_extension(ext)
            return
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        objects = self.compiler.compile(
            ext.sources,
            output_dir=self.build_temp,
            extra_postargs=["-O2", "-Wall", "-Wextra", "-Werror"],
            depends=ext.depends,
        )
        # Static where the C library allows it: no dynamic loader to run at each job's start
        # (about half a millisecond of it). Else dynamic, as any program.
        try:
            self.compiler.link_executable(
                objects,
                os.path.basename(target),
                os.path.dirname(target),
                extra_postargs=["-static", "-s"],
            )
        except LinkError:
            self.compiler.link_executable(
                objects, os.path.basename(target), os.path.dirname(target)
            )


class PlatformWheel(bdist_wheel):
    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    ext_modules=[
        Extension(
            SUPERVISOR,
            sources=["jogger/engine/supervise.c"],
            depends=[
                "jogger/engine/spawn_child.h",
                "jogger/engine/sandbox.h",
                "jogger/engine/times.h",
            ],
        )
    ],
    cmdclass={"build_ext": BuildSupervisor, "bdist_wheel": PlatformWheel},
)
