"""What the Ray driver writes to stderr becomes events at the level Ray gave each line."""

from __future__ import annotations

import structlog

from supervisor.ray._driverclient import _relay, ray_line_level


def _relay_all(lines: list[bytes]) -> list[tuple[str, str]]:
    with structlog.testing.capture_logs() as logs:
        level = "info"
        for line in lines:
            level = _relay(line, 42, level)
    return [(entry["log_level"], entry.get("line", entry["event"])) for entry in logs]


def test_ray_python_and_cpp_records_map_to_our_levels() -> None:
    """Ray's INFO (Python or C++ form) is our debug; its WARNING and ERROR stay what they are."""
    assert ray_line_level("2026-12-01 15:01:02,345\tINFO worker.py:1821 -- Started a local Ray instance.") == "debug"
    assert ray_line_level("2026-12-01 15:01:02,345\tWARNING services.py:2000 -- low shm") == "warning"
    assert ray_line_level("[2026-12-01 15:01:02,345 E 1234 1234] core_worker.cc:500: lost") == "error"
    assert ray_line_level("[2026-12-01 15:01:02,345 I 1234 1234] raylet.cc:1: up") == "debug"
    assert ray_line_level("Traceback (most recent call last):") is None


def test_indented_lines_continue_the_record_and_others_are_info() -> None:
    """A raylet dump's indented lines keep its level; a driver traceback after Ray chatter is not hidden."""
    lines = [
        b"[2026-12-01 15:01:02,345 I 1 1] raylet.cc:1: resources:\n",
        b"    CPU: 2\n",
        b"Traceback (most recent call last):\n",
        b'  File "x.py", line 1\n',
        b"[2026-12-01 15:01:02,345 E 1 1] core_worker.cc:9: lost\n",
        b"  at frame 0\n",
    ]
    assert [level for level, _ in _relay_all(lines)] == ["debug", "debug", "info", "info", "error", "error"]


def test_the_drivers_own_json_events_keep_their_name_and_level() -> None:
    """A structlog JSON line from the driver is re-emitted as that event, and does not change the text level."""
    relayed = _relay_all([b"[2026-12-01 15:01:02,345 W 1 1] x.cc:1: slow\n",
                          b'{"event": "ray.connected", "level": "info", "address": "a"}\n',
                          b"    still the warning\n"])
    assert relayed == [("warning", "[2026-12-01 15:01:02,345 W 1 1] x.cc:1: slow"),
                       ("info", "ray.connected"), ("warning", "    still the warning")]
