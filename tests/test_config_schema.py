"""The one config schema: spec fields are the keys, and messages name the exact key path and value."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest

from supervisor.config import ActorSpec, CronSpec, SinkSpec, SupervisorSettings, check_spec, parse_config
from supervisor.config._convert import keys_of, read_keys
from supervisor.config._types import Invalid, NonNegative, Positive
from supervisor.exceptions import ConfigError

STEADY = "tests.sample_actors:Steady"
CRON = "tests.sample_actors:CronOk"
# The config example of the design card (the public contract), verbatim.
DESIGN_EXAMPLE = """\
[supervisor]
heartbeat_interval = 1.0     # seconds; seed default 30
heartbeat_timeout = 2.0      # default: 2 x heartbeat_interval
control_socket = "run/actorsup.sock"   # relative paths are taken from the config file's folder

[actors.fetcher]
target = "myapp.jobs:Fetcher"   # module:Class, an actors.Actor subclass
kind = "process"                # or "task" (in-process, no crash isolation)
restart = "permanent"           # permanent | transient | temporary (as in Erlang/OTP)
heartbeat_interval = 0.5        # per-actor override
heartbeat_timeout = 1.5
stop_timeout = 5.0              # SIGTERM, then SIGKILL of the whole process group
max_restarts = 5                # within restart_window seconds, then the state is "failed"
restart_window = 60.0
args = { url = "https://example.org" }

[cron.cleanup]
target = "actors.builtin:CleanupTask"
interval = 3600                 # or schedule = "0 3 * * *" with timezone = "Europe/Berlin"

[[logs.sinks]]                  # none configured: one stdout sink
type = "stdout"

[[logs.sinks]]
type = "file"                   # rotating JSON lines
path = "logs/actorsup.jsonl"
max_bytes = "10MiB"
backups = 5

[[logs.sinks]]
type = "tcp"                    # newline-delimited JSON to Vector / Fluent Bit / Logstash / syslog-ng
address = "127.0.0.1:5140"      # "syslog" takes the same keys: RFC 5424, octet counting
spool_dir = "spool"             # disk spool while the aggregator is away
spool_max_bytes = "256MiB"
level = "info"                  # optional filters, on every sink type
actors = ["fetcher"]
"""


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, label="a.toml", import_targets=False)
    return str(info.value)


def actor(**keys: Any) -> dict[str, Any]:
    return {"actors": {"x": {"target": STEADY, **keys}}}


class TestKeyPaths:
    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (actor(env={"N": 3}), "a.toml: actors.x.env.N: expected a string, got 3"),
            (actor(env={"OK": "1", "B": [1]}), "a.toml: actors.x.env.B: expected a string, got [1]"),
            (actor(env="N=3"), 'a.toml: actors.x.env: expected a table, got "N=3"'),
            ({"logs": {"sinks": [{"type": "stdout"}, {"type": "stdout", "actors": ["a", 7]}]}},
             "a.toml: logs.sinks[1].actors[1]: expected a string made of letters, digits, '_', '.' or '-', got 7"),
            ({"logs": {"sinks": [{"type": "stdout"}, "file"]}}, 'a.toml: logs.sinks[1]: expected a table, got "file"'),
            ({"logs": {"sinks": [{"type": "stdout", "level": "loud"}]}},
             'a.toml: logs.sinks[0].level: expected one of "critical", "debug", "error", "info", "warning", '
             'got "loud"'),
            ({"actors": {"x": 5}}, "a.toml: actors.x: expected a table, got 5"),
            ({"cron": []}, "a.toml: cron: expected a table, got []"),
            ({"cron": {"c": {"target": CRON, "interval": 1, "restart": "permanent"}}},
             "a.toml: cron.c.restart: unknown key (check the spelling against docs/CONFIG.md)"),
            (actor(heartbeat_interval=True), "a.toml: actors.x.heartbeat_interval: expected a number > 0, got true"),
            (actor(max_restarts=2.0), "a.toml: actors.x.max_restarts: expected an integer >= 0, got 2.0"),
            (actor(kind="cron"),
             'a.toml: actors.x.kind: expected one of "command", "process", "ray", "task", got "cron"'),
            ({"supervisor": {"backend": "curio"}},
             'a.toml: supervisor.backend: expected one of "asyncio", "trio", got "curio"'),
            ({"supervisor": {"metrics_port": 70000}},
             "a.toml: supervisor.metrics_port: expected an integer from 0 to 65535, got 70000"),
        ],
    )
    def test_each_error_blames_the_innermost_key_and_shows_its_value(self, data: dict[str, Any], message: str) -> None:
        """An error inside a table or array names the exact key or index, and the value found there."""
        assert error_of(data) == message

    def test_a_long_value_is_cut_to_keep_the_error_on_one_short_line(self) -> None:
        """A huge wrong value is shown cut short, so the message stays one readable line."""
        message = error_of(actor(env={"N": list(range(10_000))}))
        assert message.startswith("a.toml: actors.x.env.N: expected a string, got [0, 1, 2")
        assert message.endswith("...") and len(message) < 300 and "\n" not in message


class TestOneSchema:
    def test_the_design_cards_config_example_is_accepted(self) -> None:
        """Every key of the design card's [supervisor]/[actors]/[cron]/[logs] example parses to its value."""
        source = Path("/srv/app/actorsup.toml")
        config = parse_config(tomllib.loads(DESIGN_EXAMPLE), source=source, import_targets=False)
        fetcher, = config.actors
        assert (fetcher.kind, fetcher.restart, fetcher.heartbeat_timeout, fetcher.args) == (
            "process", "permanent", 1.5, {"url": "https://example.org"})
        assert config.supervisor.control_socket == Path("/srv/app/run/actorsup.sock")
        assert config.cron[0].interval == 3600
        stdout, file, tcp = config.logs.sinks
        assert stdout.type == "stdout"
        assert (file.path, file.max_bytes, file.backups) == (Path("/srv/app/logs/actorsup.jsonl"), 10 * 2**20, 5)
        assert (tcp.address, tcp.level, tcp.actors) == (("127.0.0.1", 5140), 20, frozenset({"fetcher"}))

    @pytest.mark.parametrize("cls", [SupervisorSettings, ActorSpec, CronSpec, SinkSpec])
    def test_every_key_defaults_to_the_spec_fields_default(self, cls: type[msgspec.Struct]) -> None:
        """The spec class is the schema: a key left out takes the field's default (target: checked per kind)."""
        for name, field in keys_of(cls).items():
            assert field.required == (name == "type"), name

    def test_cron_tables_have_no_kind_or_restart_but_actors_do(self) -> None:
        """Keys the loader fills in (name; for cron also kind and restart) are not config keys."""
        assert {"kind", "restart"} <= set(keys_of(ActorSpec)) and "name" not in keys_of(ActorSpec)
        assert not {"name", "kind", "restart"} & set(keys_of(CronSpec))
        assert {"interval", "schedule", "overlap"} <= set(keys_of(CronSpec))


class _Probe(msgspec.Struct, frozen=True, kw_only=True):
    http: str
    every: Positive = 5.0


class _Extended(ActorSpec, frozen=True, kw_only=True):
    restart_delay: NonNegative = 0.0
    mode: Literal["fast", "slow"] = "fast"
    probe: _Probe | None = None


class TestExtending:
    def test_a_new_field_is_a_new_key_with_its_type_checked(self) -> None:
        """Adding a field to a spec class is all it takes to accept, default and type-check a key."""
        given = read_keys({"target": STEADY, "restart_delay": 2, "probe": {"http": "http://h/"}}, _Extended, Path("/"))
        spec = _Extended(name="x", **given)
        assert (spec.restart_delay, spec.mode, spec.probe) == (2.0, "fast", _Probe(http="http://h/", every=5.0))

    @pytest.mark.parametrize(
        ("raw", "path", "problem"),
        [
            ({"mode": "medium"}, ("mode",), 'expected one of "fast", "slow", got "medium"'),
            ({"restart_delay": "1s"}, ("restart_delay",), 'expected a number >= 0, got "1s"'),
            ({"probe": {"http": "h", "every": 0}}, ("probe", "every"), "expected a number > 0, got 0"),
            ({"probe": {"every": 1}}, ("probe", "http"), "required key is missing"),
        ],
    )
    def test_a_new_fields_errors_name_its_key(self, raw: dict[str, Any], path: tuple[str, ...], problem: str) -> None:
        """A new key's errors, nested tables included, come with the key path and the accepted values."""
        with pytest.raises(Invalid) as info:
            read_keys({"target": STEADY, **raw}, _Extended, Path("/"))
        assert (info.value.path, info.value.problem) == (path, problem)


class TestSpecsBuiltInCode:
    def test_a_good_spec_passes(self) -> None:
        """check_spec accepts a spec whose values the loader would accept."""
        check_spec(CronSpec(name="c", target=CRON, interval=5.0, overlap="queue"))

    @pytest.mark.parametrize(
        ("spec", "path", "problem"),
        [
            (CronSpec(name="c", target=CRON, interval=5.0, overlap="never"),  # type: ignore[arg-type]
             "overlap", 'expected one of "queue", "replace", "skip", got "never"'),
            (CronSpec(name="c", target=CRON, interval=-1.0), "interval", "expected a number > 0, got -1.0"),
            (CronSpec(name="c", target=CRON), "",
             'set interval (seconds) or schedule (a cron expression such as "*/5 * * * *")'),
            (ActorSpec(name="a", target="nocolon"), "target", 'expected "module:Class", got "nocolon"'),
            (ActorSpec(name="a", target=STEADY, backoff_initial=2.0, backoff_max=1.0),
             "backoff_max", "must be >= backoff_initial (2), got 1"),
        ],
    )
    def test_a_bad_spec_gets_the_loaders_message(self, spec: ActorSpec, path: str, problem: str) -> None:
        """A spec built in code is checked by the same rules, and the error names the key inside the spec."""
        with pytest.raises(ConfigError) as info:
            check_spec(spec)
        assert (info.value.path, info.value.problem) == (path, problem)
