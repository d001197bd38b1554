"""The embedded demo config: `actorsup run` with no CONFIG."""

from __future__ import annotations

from ..config import Config, parse_config

__all__ = ["demo_config"]

DEMO = {
    "supervisor": {"heartbeat_interval": 0.5, "heartbeat_timeout": 1.5},
    "actors": {
        "healthy": {"target": "actors.demo:Healthy"},
        "crashy": {"target": "actors.demo:Crashy", "args": {"every": 3.0}, "max_restarts": 1000},
        "hangs": {"target": "actors.demo:Hangs", "args": {"after": 2.0}, "max_restarts": 1000},
    },
    "cron": {"tick": {"target": "actors.demo:Tick", "interval": 2.0}},
}


def demo_config() -> Config:
    return parse_config(DEMO, label="<demo>")
