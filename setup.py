"""Build the optional C accelerator (mailtrack.core._speedups); everything else is in pyproject.toml.

``pip install`` (or ``pip install -e .``) compiles ``mailtrack/core/_speedups.c``
where a C compiler and the Python headers exist. Where the build fails, it
warns and installs the pure-Python package, which does the same work more
slowly: ``mailtrack.speedups_enabled()`` says which path runs.
"""

from __future__ import annotations

import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

SPEEDUPS = Extension(
    "mailtrack.core._speedups",
    sources=["mailtrack/core/_speedups.c"],
    depends=["mailtrack/core/_speedups_scan.h"],
)


def _warn(error: BaseException) -> None:
    print(
        f"WARNING: mailtrack's C speedups could not be built ({error!r}); "
        "installing the pure-Python package, which works the same, more slowly.",
        file=sys.stderr,
    )


class OptionalBuildExt(build_ext):
    """``build_ext`` that turns a failed compilation into a warning (as MarkupSafe and msgpack do)."""

    def run(self) -> None:
        try:
            super().run()
        except PlatformError as error:
            _warn(error)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except (CCompilerError, ExecError, PlatformError, ValueError, OSError) as error:
            _warn(error)


setup(ext_modules=[SPEEDUPS], cmdclass={"build_ext": OptionalBuildExt})
