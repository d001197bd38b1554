"""The switch of the log pipeline's C modules (``_crender``, ``_cwriter``).

``ACTORSUP_NO_NATIVE=1`` in the environment turns both off: their
pure-Python twins serve instead (same output, slower). CI runs the
log-pipeline tests a second time so, and it is the first thing to try when
a C module is suspected of a fault.
"""

from __future__ import annotations

import os

__all__ = ["allowed", "loaded", "missing_warning"]

MISSING = (
    "warning: the C log modules (_crender, _cwriter) are not built, so log rendering and file writes use "
    "their slower pure-Python twins; install a C compiler (Debian: apt-get install gcc python3-dev) and "
    "reinstall actorsup, or set ACTORSUP_NO_NATIVE=1 to silence this"
)


def allowed() -> bool:
    """False when ``ACTORSUP_NO_NATIVE`` is set to anything but ``""`` or ``"0"``."""
    return os.environ.get("ACTORSUP_NO_NATIVE", "") in ("", "0")


def loaded() -> bool:
    """True when both C modules are built and in use (``supervisor.started`` logs it as ``native``)."""
    from . import _render, _writer  # they import this module

    return _render.NATIVE and _writer.NATIVE


def missing_warning() -> str | None:
    """The one line ``check`` and ``run`` print when the C modules were not built (and not turned off).

    pip shows a failed optional build only with ``-v`` (_build_ext.py says why), so this is where a user
    who installed without a terminal learns of it.
    """
    return MISSING if allowed() and not loaded() else None
