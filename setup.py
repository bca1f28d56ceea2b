"""Build the optional C accelerator (mailtrack.core._speedups); everything else is in pyproject.toml.

``pip install`` (or ``pip install -e .``) compiles ``mailtrack/core/_speedups.c``
where a C compiler and the Python headers exist. Where the build fails, it
warns and installs the pure-Python package, which does the same work more
slowly: ``mailtrack.speedups_enabled()`` says which path runs.

The click signer's SHA-256 is OpenSSL's where its headers and libcrypto are
there (the library CPython's own hashlib uses; it runs the CPU's SHA
instructions): the first build tries that. Where it fails, the extension is
built again with its portable SHA-256 (``_speedups_sha256.h``), slower but the
same tokens; ``MAILTRACK_NO_OPENSSL=1`` skips the first try.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

SPEEDUPS = Extension(
    "mailtrack.core._speedups",
    sources=["mailtrack/core/_speedups.c"],
    # Optional: a build that failed (and warned, below) leaves no .so, which setuptools' in-place and editable
    # builds then do not try to copy (without it, `pip install -e .` failed where no C compiler is present).
    optional=True,
    depends=[
        "mailtrack/core/_speedups_scan.h",
        "mailtrack/core/_speedups_sign.h",
        "mailtrack/core/_speedups_links.h",
        "mailtrack/core/_speedups_sha256.h",
        "mailtrack/core/_speedups_splice.h",
        "mailtrack/core/_speedups_qp.h",
        "mailtrack/core/_speedups_lines.h",
        "mailtrack/core/_speedups_base64.h",
        "mailtrack/core/_speedups_urls.h",
        "mailtrack/core/_speedups_json.h",
    ],
)
#: What the first build adds: OpenSSL's SHA-256.
OPENSSL_MACRO = ("MAILTRACK_OPENSSL", "1")


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
        if ext.name == SPEEDUPS.name and os.environ.get("MAILTRACK_NO_OPENSSL", "") in ("", "0"):
            ext.define_macros.append(OPENSSL_MACRO)
            ext.libraries.append("crypto")
            try:
                super().build_extension(ext)
                return
            except (CCompilerError, ExecError, PlatformError, ValueError, OSError) as error:
                print(f"note: building mailtrack's C speedups with their portable SHA-256 ({error!r})", file=sys.stderr)
            finally:
                ext.define_macros.remove(OPENSSL_MACRO)
                ext.libraries.remove("crypto")
            self.force = True  # compile again, without the macro
        try:
            super().build_extension(ext)
        except (CCompilerError, ExecError, PlatformError, ValueError, OSError) as error:
            _warn(error)


setup(ext_modules=[SPEEDUPS], cmdclass={"build_ext": OptionalBuildExt})
