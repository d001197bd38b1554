"""Configs that `run` could not run are refused by `check`: nesting, path lengths, NUL, counts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor._supervisor import Supervisor
from supervisor.config import load_config, parse_config
from supervisor.control import ControlServer, RequestFailed, arequest
from supervisor.exceptions import ConfigError

pytestmark = pytest.mark.anyio

STEADY = "tests.sample_actors:Steady"
TOO_DEEP = "arrays or tables nested too deeply (at most 32 levels are accepted)"


def deep_arrays(n: int) -> str:
    return f'[actors.x]\ntarget = "{STEADY}"\nargs = {{ x = {"[" * n}{"]" * n} }}\n'


def deep_tables(n: int) -> str:
    return f'[actors.x]\ntarget = "{STEADY}"\nargs = {"{ a = " * n}1{" }" * n}\n'


def error_of(data: dict[str, Any], source: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source=source, label="a.toml", import_targets=False)
    return str(info.value)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # The control socket is bound below it: AF_UNIX paths hold at most 107 bytes.
    with tempfile.TemporaryDirectory(prefix="cfg-", dir="/tmp") as d:
        yield Path(d)


class TestDeepNesting:
    @pytest.mark.parametrize("text", [deep_arrays(500), deep_tables(340)], ids=["arrays-500", "tables-340"])
    def test_check_prints_one_config_error_line_and_exits_2(self, tmp_path: Path, text: str) -> None:
        """`actorsup check` on TOML nested past the parser's stack is one error line, exit 2, no traceback."""
        path = tmp_path / "deep.toml"
        path.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "supervisor", "check", str(path)],
            capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=os.getcwd()),
        )
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == f"actorsup: {path}: invalid TOML: {TOO_DEEP}\n"

    def test_load_config_raises_a_config_error(self, tmp_path: Path) -> None:
        """load_config turns the parser's RecursionError into a ConfigError on the file."""
        path = tmp_path / "deep.toml"
        path.write_text(deep_tables(340))
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert (info.value.path, info.value.problem) == ("", f"invalid TOML: {TOO_DEEP}")

    @pytest.mark.parametrize("depth", [33, 5000])
    def test_a_parsed_document_nested_too_deep_is_refused_at_its_key(self, depth: int) -> None:
        """parse_config refuses free-form values nested past 32 levels, without recursing into them."""
        value: Any = 1
        for _ in range(depth):
            value = [value]
        assert error_of({"actors": {"x": {"target": STEADY, "args": {"x": value}}}}) == (
            "a.toml: actors.x.args.x: arrays and tables may nest at most 32 levels deep here"
        )

    def test_a_value_too_deep_to_show_is_named_by_its_type(self) -> None:
        """A wrong value nested past Python's stack is described, not printed, in the one-line error."""
        value: Any = 1
        for _ in range(100_000):
            value = [value]
        assert error_of({"actors": {"x": {"target": STEADY, "env": {"N": value}}}}) == (
            "a.toml: actors.x.env.N: expected a string, got a list nested too deeply to show"
        )

    def test_32_levels_are_accepted(self) -> None:
        """Nesting up to the limit is fine."""
        value: Any = 1
        for _ in range(32):
            value = {"a": value}
        config = parse_config({"actors": {"x": {"target": STEADY, "args": {"x": value}}}}, import_targets=False)
        assert config.actors[0].args["x"]["a"]["a"]

    async def test_reload_of_a_deep_config_is_a_config_error(self, short_dir: Path) -> None:
        """Through the control socket, reloading such a file answers code config_error and keeps running."""
        path = short_dir / "actorsup.toml"
        path.write_text(f'[actors.x]\ntarget = "{STEADY}"\n')
        supervisor = Supervisor(load_config(path))
        path.write_text(deep_arrays(500))
        server = ControlServer(supervisor, short_dir / "s.sock")
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
            with anyio.fail_after(10), pytest.raises(RequestFailed) as info:
                await arequest(short_dir / "s.sock", "reload")
            tg.cancel_scope.cancel()
        assert (info.value.code, info.value.message) == (
            "config_error", f"{path}: invalid TOML: {TOO_DEEP}; the running config is kept")
        assert [s.name for s in supervisor.config.actors] == ["x"]


class TestRunnableBounds:
    def test_a_control_socket_too_long_once_resolved_is_refused(self, short_dir: Path) -> None:
        """control_socket is measured after resolving it from the config's folder: 107 bytes at most."""
        source = short_dir / "actorsup.toml"
        fits = "s" * (107 - len(str(short_dir)) - 1)
        config = parse_config({"supervisor": {"control_socket": fits}}, source=source, import_targets=False)
        assert len(str(config.supervisor.socket_path)) == 107
        message = error_of({"supervisor": {"control_socket": fits + "s"}}, source)
        assert message == (
            "a.toml: supervisor.control_socket: resolves to a 108-byte path, but a Unix socket path holds "
            f'at most 107 bytes: choose a shorter path, got "{short_dir}/{fits}s"'
        )

    def test_a_state_dir_that_puts_the_default_socket_too_long_is_refused(self, short_dir: Path) -> None:
        """Without control_socket the socket is state_dir/actorsup.sock, so state_dir is measured too."""
        deep = "d" * 100
        message = error_of({"supervisor": {"state_dir": deep}}, short_dir / "actorsup.toml")
        assert message.startswith("a.toml: supervisor.state_dir: puts the control socket at a ")
        assert message.endswith(f'set a shorter state_dir or a control_socket, got "{short_dir}/{deep}"')
        parse_config({"supervisor": {"state_dir": deep, "control_socket": "/tmp/s.sock"}}, import_targets=False)

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"supervisor": {"control_socket": "run/\0s.sock"}},
             'a.toml: supervisor.control_socket: expected a path (a non-empty string without NUL characters), '
             'got "run/\\u0000s.sock"'),
            ({"supervisor": {"state_dir": "st\0ate"}},
             'a.toml: supervisor.state_dir: expected a path (a non-empty string without NUL characters), '
             'got "st\\u0000ate"'),
            ({"logs": {"sinks": [{"type": "file", "path": "a\0.jsonl"}]}},
             'a.toml: logs.sinks[0].path: expected a path (a non-empty string without NUL characters), '
             'got "a\\u0000.jsonl"'),
            ({"logs": {"sinks": [{"type": "tcp", "address": "h:1", "spool_dir": "\0"}]}},
             'a.toml: logs.sinks[0].spool_dir: expected a path (a non-empty string without NUL characters), '
             'got "\\u0000"'),
            ({"actors": {"x": {"target": STEADY, "cwd": "da\0ta"}}},
             'a.toml: actors.x.cwd: expected a path (a non-empty string without NUL characters), got "da\\u0000ta"'),
            ({"actors": {"x": {"target": STEADY, "env": {"A": "1\0"}}}},
             'a.toml: actors.x.env.A: a value may not hold NUL, got "1\\u0000"'),
            ({"actors": {"x": {"target": STEADY, "env": {"A=B": "1"}}}},
             "a.toml: actors.x.env.A=B: a variable name may not be empty or hold '=' or NUL, got \"A=B\""),
            ({"supervisor": {"control_socket": ""}},
             'a.toml: supervisor.control_socket: expected a path (a non-empty string without NUL characters), got ""'),
        ],
    )
    def test_nul_in_a_path_or_environment_is_refused(self, data: dict[str, Any], message: str) -> None:
        """A NUL byte (or an empty path) cannot reach the OS: each is one line naming the key."""
        assert error_of(data) == message

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"logs": {"sinks": [{"type": "file", "path": "a", "backups": 1_000_000}]}},
             "a.toml: logs.sinks[0].backups: expected an integer from 0 to 1000, got 1000000"),
            ({"supervisor": {"spare_processes": 100_000}},
             "a.toml: supervisor.spare_processes: expected an integer from 0 to 64, got 100000"),
        ],
    )
    def test_counts_past_what_run_can_do_are_refused(self, data: dict[str, Any], message: str) -> None:
        """backups is at most 1000 and spare_processes at most 64."""
        assert error_of(data) == message

    def test_the_bounds_themselves_are_accepted(self) -> None:
        """backups = 1000 and spare_processes = 64 are valid."""
        config = parse_config(
            {"supervisor": {"spare_processes": 64},
             "logs": {"sinks": [{"type": "file", "path": "a", "backups": 1000}]}},
            import_targets=False,
        )
        assert (config.supervisor.spare_processes, config.logs.sinks[0].backups) == (64, 1000)
