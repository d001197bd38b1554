"""Config validation: each kind of bad input gets one precise line; good input resolves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.config import load_config, parse_config, parse_size
from supervisor.exceptions import ConfigError

STEADY = "tests.sample_actors:Steady"
CRON = "tests.sample_actors:CronOk"


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, label="actorsup.toml")
    return str(info.value)


class TestBadConfig:
    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"actors": {"fetcher": {"target": STEADY, "heartbeat_timeout": "soon"}}},
             'actorsup.toml: actors.fetcher.heartbeat_timeout: expected a number > 0, got "soon"'),
            ({"actors": {"f": {"target": STEADY, "heartbeat_interval": -1}}},
             "actorsup.toml: actors.f.heartbeat_interval: expected a number > 0, got -1"),
            ({"actors": {"f": {"target": STEADY, "bogus": 1}}},
             "actorsup.toml: actors.f.bogus: unknown key (check the spelling against docs/CONFIG.md)"),
            ({"actors": {"f": {"kind": "process"}}},
             "actorsup.toml: actors.f.target: required key is missing"),
            ({"actors": {"f": {"target": STEADY, "restart": "sometimes"}}},
             'actorsup.toml: actors.f.restart: expected one of "permanent", "temporary", "transient", got "sometimes"'),
            ({"actors": {"f": {"target": STEADY, "max_restarts": 1.5}}},
             "actorsup.toml: actors.f.max_restarts: expected an integer >= 0, got 1.5"),
            ({"actors": {"f": {"target": "nomodule"}}},
             'actorsup.toml: actors.f.target: expected "module:Class", got "nomodule"'),
            ({"actors": {"f": {"target": "tests.sample_actors:Nope"}}},
             "actorsup.toml: actors.f.target: cannot import \"tests.sample_actors:Nope\": "
             "module 'tests.sample_actors' has no attribute 'Nope'"),
            ({"actors": {"f": {"target": CRON}}},
             "actorsup.toml: actors.f.target: 'tests.sample_actors:CronOk' is a CronTask: "
             "configure it under [cron.NAME]"),
            ({"actors": {"f": {"target": STEADY, "max_rss": "lots"}}},
             'actorsup.toml: actors.f.max_rss: expected a size such as 1048576, "512KiB", "10MiB" or "1GB", '
             'got "lots"'),
            ({"actors": {"f": {"target": STEADY, "heartbeat_interval": 2, "heartbeat_timeout": 1}}},
             "actorsup.toml: actors.f.heartbeat_timeout: must be greater than heartbeat_interval (2), got 1"),
            ({"supervisor": {"heartbeat_interval": 2, "heartbeat_timeout": 1}},
             "actorsup.toml: supervisor.heartbeat_timeout: must be greater than heartbeat_interval (2), got 1"),
            ({"supervisor": {"channel_ring": "100KiB"}},
             "actorsup.toml: supervisor.channel_ring: must be 0 (frames on the socket) or a power of two "
             '>= 4096 such as "128KiB", got 102400'),
            ({"supervisor": {"channel_ring": "big"}},
             'actorsup.toml: supervisor.channel_ring: expected a size such as 1048576, "512KiB", "10MiB" '
             'or "1GB", got "big"'),
            ({"supervisor": {"colour": "blue"}},
             "actorsup.toml: supervisor.colour: unknown key "
             "(check the spelling against docs/CONFIG.md)"),
            ({"cron": {"c": {"target": CRON, "interval": 5, "schedule": "* * * * *"}}},
             "actorsup.toml: cron.c: set either interval or schedule, not both"),
            ({"cron": {"c": {"target": CRON, "interval": 0}}},
             "actorsup.toml: cron.c.interval: expected a number > 0, got 0"),
            ({"cron": {"c": {"target": CRON, "schedule": "0 3 * * *", "timezone": "Mars/Olympus"}}},
             'actorsup.toml: cron.c.timezone: unknown time zone "Mars/Olympus" '
             '(use an IANA name such as "Europe/Berlin")'),
            ({"cron": {"c": {"target": STEADY, "interval": 5}}},
             "actorsup.toml: cron.c.target: 'tests.sample_actors:Steady' is not a subclass of actors.CronTask"),
            ({"logs": {"sinks": [{"type": "tcp"}]}},
             'actorsup.toml: logs.sinks[0].address: required for type "tcp" (for example "127.0.0.1:5140")'),
            ({"logs": {"sinks": [{"type": "tcp", "address": "localhost"}]}},
             'actorsup.toml: logs.sinks[0].address: expected "host:port", got "localhost"'),
            ({"logs": {"sinks": [{"type": "kafka"}]}},
             'actorsup.toml: logs.sinks[0].type: '
             'expected one of "file", "relp", "stdout", "syslog", "tcp", got "kafka"'),
            ({"actors": {"x": {"target": STEADY}}, "cron": {"x": {"target": CRON, "interval": 1}}},
             "actorsup.toml: cron.x: name already used by actors.x"),
        ],
    )
    def test_one_line_error(self, data: dict[str, Any], message: str) -> None:
        """The error names the file, the key path and the bad value, on one line."""
        assert error_of(data) == message

    def test_invalid_cron_expression(self) -> None:
        """A cron expression that does not parse is an error on the schedule key."""
        message = error_of({"cron": {"c": {"target": CRON, "schedule": "61 * * * *"}}})
        assert message.startswith("actorsup.toml: cron.c.schedule: ")
        assert message.endswith(', got "61 * * * *"')

    def test_a_cron_task_without_a_rate_is_an_error_when_its_class_is_not_read(self) -> None:
        """Without importing the target there is no class interval to fall back on: the error says what to set."""
        with pytest.raises(ConfigError) as info:
            parse_config({"cron": {"c": {"target": CRON}}}, label="actorsup.toml", import_targets=False)
        assert str(info.value) == ('actorsup.toml: cron.c: set interval (seconds) or schedule '
                                   '(a cron expression such as "*/5 * * * *")')

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a ConfigError, not a traceback."""
        with pytest.raises(ConfigError, match=r"nope\.toml: file not found$"):
            load_config(tmp_path / "nope.toml")

    def test_invalid_toml(self, tmp_path: Path) -> None:
        """TOML syntax errors are reported with the parser's position."""
        path = tmp_path / "bad.toml"
        path.write_text("[actors.x\n")
        expected = r"bad\.toml: invalid TOML: Expected .]. at the end of a table declaration \(at line 1, column 10\)$"
        with pytest.raises(ConfigError, match=expected):
            load_config(path)


class TestGoodConfig:
    def test_defaults_and_inheritance(self, tmp_path: Path) -> None:
        """Actors inherit supervisor heartbeat settings; the timeout defaults to 2 x interval."""
        path = tmp_path / "a.toml"
        path.write_text(
            '[supervisor]\nheartbeat_interval = 1.0\ncontrol_socket = "run/s.sock"\n'
            f'[actors.a]\ntarget = "{STEADY}"\n'
            f'[actors.b]\ntarget = "{STEADY}"\nheartbeat_interval = 0.5\nmax_rss = "512MiB"\n'
            f'[cron.c]\ntarget = "{CRON}"\nschedule = "0 3 * * *"\ntimezone = "Europe/Berlin"\n'
        )
        config = load_config(path)
        a, b = config.actors
        assert (a.heartbeat_interval, a.heartbeat_timeout) == (1.0, 2.0)
        assert (b.heartbeat_interval, b.heartbeat_timeout) == (0.5, 1.0)
        assert b.max_rss == 512 * 1024**2
        assert config.supervisor.control_socket == tmp_path / "run/s.sock"
        assert config.supervisor.state_dir == tmp_path / ".actorsup"
        assert config.cron[0].timezone == "Europe/Berlin"
        assert [s.type for s in config.logs.sinks] == ["stdout"]

    def test_a_cron_task_without_a_rate_runs_at_its_class_interval(self) -> None:
        """Built-ins keep their documented defaults (CleanupTask hourly, HeartbeatTask every 30 s); a set rate wins."""
        config = parse_config({"cron": {
            "cleanup": {"target": "actors.builtin:CleanupTask"},
            "beat": {"target": "actors.builtin:HeartbeatTask"},
            "fast": {"target": "actors.builtin:CleanupTask", "interval": 5},
            "nightly": {"target": "actors.builtin:CleanupTask", "schedule": "0 3 * * *"},
        }})
        assert [(c.name, c.interval) for c in config.cron] == [
            ("cleanup", 3600.0), ("beat", 30.0), ("fast", 5.0), ("nightly", None)]

    @pytest.mark.parametrize(("text", "size"), [(0, 0), ("10MiB", 10 * 2**20), ("1GB", 10**9), ("512 KiB", 512 * 1024)])
    def test_sizes(self, text: int | str, size: int) -> None:
        """Sizes take bytes or a unit suffix."""
        assert parse_size(text) == size
