"""Where a config's supervisor listens, read without validating the config.

A client only needs ``[supervisor] control_socket`` and ``state_dir``. The
file may be mid-edit and invalid, and that must not lock `status`, `logs` or
`shutdown` out of the supervisor that is running the previous version: when
the TOML does not parse, the two keys are read line by line from the
``[supervisor]`` table. The rules are the config's own (``socket_path_for``);
a test checks that both agree.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["Located", "demo_socket", "locate_socket"]

_TABLE = re.compile(r"^\s*\[\s*([^\]\s]+)\s*\]")
_KEY = re.compile(r"""^\s*(control_socket|state_dir)\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(?:#.*)?$""")


class Located(NamedTuple):
    path: Path
    problem: str | None  # why the config could not be read as a whole (None: it could)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _from_table(base: Path, table: dict[str, Any]) -> Path:
    socket, state = table.get("control_socket"), table.get("state_dir")
    if isinstance(socket, str):
        return _resolve(base, socket)
    state_dir = _resolve(base, state) if isinstance(state, str) else base / ".actorsup"
    return state_dir / "actorsup.sock"


def _scan(text: str) -> dict[str, Any]:
    """``control_socket``/``state_dir`` of the ``[supervisor]`` table, from a file that is not TOML."""
    found: dict[str, Any] = {}
    inside = False
    for line in text.splitlines():
        if table := _TABLE.match(line):
            inside = table[1] == "supervisor"
        elif inside and (key := _KEY.match(line)):
            found[key[1]] = key[2] if key[2] is not None else key[3]
    return found


def locate_socket(config: Path) -> Located:
    """The control socket of ``config``; raise ``OSError`` if the file cannot be read."""
    import tomllib  # only when a config names the socket

    text = config.read_bytes().decode("utf-8", "replace")
    base = config.resolve().parent
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return Located(_from_table(base, _scan(text)), f"{config}: invalid TOML: {exc}")
    table = data.get("supervisor")
    return Located(_from_table(base, table if isinstance(table, dict) else {}), None)


def demo_socket() -> Path:
    """Where `actorsup run` with no config (the demo) listens, whatever the current folder.

    ``$XDG_RUNTIME_DIR/actorsup-demo/`` (a per-user folder), else a per-uid folder
    in the temporary directory; clients find it when nothing else names a socket.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    # $TMPDIR or /tmp, as tempfile.gettempdir() would say, without its 5 ms import.
    temporary = Path(os.environ.get("TMPDIR") or "/tmp")
    base = Path(runtime) / "actorsup-demo" if runtime else temporary / f"actorsup-demo-{os.getuid()}"
    return base / "actorsup.sock"
