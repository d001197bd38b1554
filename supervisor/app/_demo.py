"""The embedded demo config: `actorsup run` with no CONFIG.

Its control socket is at a fixed per-user place (`actorsup status` finds it from
any folder), and its state (cron history) lives in a fresh temporary folder that
is removed at exit: a second demo run starts clean, with no misfire warnings
about the first run's schedule.
"""

from __future__ import annotations

import tempfile

from ..config import Config, parse_config
from ..control._locate import demo_socket

__all__ = ["demo_config"]

SETTINGS = {"heartbeat_interval": 0.5, "heartbeat_timeout": 1.5}
DEMO = {
    "supervisor": SETTINGS,
    "actors": {
        "healthy": {"target": "actors.demo:Healthy"},
        "crashy": {"target": "actors.demo:Crashy", "args": {"every": 3.0}, "max_restarts": 1000},
        "hangs": {"target": "actors.demo:Hangs", "args": {"after": 2.0}, "max_restarts": 1000},
    },
    "cron": {"tick": {"target": "actors.demo:Tick", "interval": 2.0}},
}

_state: list[tempfile.TemporaryDirectory[str]] = []  # kept alive until the process exits


def demo_config() -> Config:
    state = tempfile.TemporaryDirectory(prefix="actorsup-demo-state-")
    _state.append(state)
    settings = {**SETTINGS, "state_dir": state.name, "control_socket": str(demo_socket())}
    return parse_config({**DEMO, "supervisor": settings}, label="<demo>")
