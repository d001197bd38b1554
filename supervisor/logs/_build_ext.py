"""Build hook: say so when the optional C modules could not be built.

The modules and their options are declared in pyproject.toml, which names
this class as ``build_ext`` (setuptools loads this file by its path, so no
other module of actorsup is imported at build time). Setuptools
skips an optional module that fails to compile with a warning that pip shows
only with ``-v``: pip runs a build backend with its output piped, logs that
output at its verbose level and prints it only if the build fails. So the
warning also goes to the controlling terminal (``/dev/tty``), which pip does
not capture, when there is one. Without a terminal (CI, a container build)
``actorsup check`` and ``actorsup run`` print a warning at start
(``supervisor.logs._native.missing_warning``).
"""

from __future__ import annotations

import sys
from typing import Any

from setuptools.command.build_ext import build_ext

WARNING = (
    "WARNING: actorsup: the C log modules ({names}) could not be built (the C compiler {cc!r} failed); "
    "actorsup works without "
    "them, with slower log rendering and file writes. To build them, install a C compiler and the Python "
    "headers (Debian: apt-get install gcc python3-dev) and reinstall."
)


class BuildExt(build_ext):
    """build_ext that reports optional modules it could not build, where pip's user sees it."""

    def run(self) -> None:
        self._failed: list[str] = []
        super().run()
        if self._failed:
            cc = (getattr(self.compiler, "compiler_so", None) or ["cc"])[0]
            _tell(WARNING.format(names=", ".join(self._failed), cc=cc))

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception:  # setuptools skips an optional module (and logs it) on any build error
            if ext.optional:
                self._failed.append(ext.name.rsplit(".", 1)[-1])
            raise


def _tell(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # pip -v, and the log of a failed install
    try:
        with open("/dev/tty", "w") as tty:  # the terminal pip runs in: shown at its default verbosity
            tty.write(f"\n{line}\n")
    except OSError:
        pass  # no controlling terminal

