"""`check` catches what would fail only once an actor starts: its args, its run, its cwd."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import parse_config
from supervisor.exceptions import ConfigError

ACTORS = '''
from typing import Any
from actors import Actor, CronTask

class Plain(Actor):
    async def run(self) -> None: ...

class Takes(Actor):
    def __init__(self, url: str, retries: int = 3) -> None:
        self.url = url

    async def run(self) -> None: ...

class TakesAny(Actor):
    def __init__(self, **options: Any) -> None:
        self.options = options

    async def run(self) -> None: ...

class PositionalOnly(Actor):
    def __init__(self, n: int, /) -> None: ...

    async def run(self) -> None: ...

class SyncRun(Actor):
    def run(self) -> None: ...

class NoRun(Actor):
    pass

class Job(CronTask):
    async def run(self) -> None: ...

class SyncJob(CronTask):
    def run(self) -> None: ...
'''
_modules = itertools.count()


@pytest.fixture
def mod(tmp_path: Path) -> Iterator[str]:
    """A fresh module of sample actors in the config's folder; its name."""
    name = f"cfg_targets_{os.getpid()}_{next(_modules)}"
    (tmp_path / f"{name}.py").write_text(ACTORS)
    saved = list(sys.path)
    yield name
    sys.path[:] = saved
    sys.modules.pop(name, None)


def error_of(tmp_path: Path, data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source=tmp_path / "a.toml", label="a.toml")
    return str(info.value)


def actor(target: str, **keys: Any) -> dict[str, Any]:
    return {"actors": {"x": {"target": target, **keys}}}


class TestConstructorArgs:
    def test_an_argument_the_constructor_does_not_take_is_refused(self, tmp_path: Path, mod: str) -> None:
        """An args key that is not a constructor parameter is named, with the parameters it has."""
        assert error_of(tmp_path, actor(f"{mod}:Takes", args={"url": "u", "retrys": 5})) == (
            f"a.toml: actors.x.args.retrys: {mod}:Takes has no parameter 'retrys' (it takes: url, retries)"
        )

    def test_args_for_a_class_without_a_constructor_are_refused(self, tmp_path: Path, mod: str) -> None:
        """Actor's own constructor takes no args: any key is an error at check time."""
        assert error_of(tmp_path, actor(f"{mod}:Plain", args={"n": 1})) == (
            f"a.toml: actors.x.args.n: {mod}:Plain has no parameter 'n' (it takes: none)"
        )

    def test_a_missing_required_argument_is_refused(self, tmp_path: Path, mod: str) -> None:
        """A constructor parameter without a default must be in args."""
        assert error_of(tmp_path, actor(f"{mod}:Takes")) == (
            f"a.toml: actors.x.args: {mod}:Takes needs 'url': add it to args"
        )

    def test_a_required_positional_only_parameter_is_refused(self, tmp_path: Path, mod: str) -> None:
        """args are keywords, so a required positional-only parameter can never be given."""
        assert error_of(tmp_path, actor(f"{mod}:PositionalOnly", args={"n": 1})) == (
            f"a.toml: actors.x.args: {mod}:PositionalOnly takes 'n' by position only, which args cannot give"
        )

    def test_matching_args_and_a_users_kwargs_are_accepted(self, tmp_path: Path, mod: str) -> None:
        """Args that bind are fine; a user's own **kwargs takes any key."""
        config = parse_config(
            {"actors": {"a": {"target": f"{mod}:Takes", "args": {"url": "u", "retries": 1}},
                        "b": {"target": f"{mod}:TakesAny", "args": {"anything": 1}}}},
            source=tmp_path / "a.toml",
        )
        assert [s.args for s in config.actors] == [{"url": "u", "retries": 1}, {"anything": 1}]

    def test_a_cron_task_takes_the_cron_task_parameters_only(self, tmp_path: Path, mod: str) -> None:
        """A CronTask without its own constructor takes interval, schedule and timezone, nothing else."""
        data = {"cron": {"c": {"target": f"{mod}:Job", "interval": 5, "args": {"size": 1}}}}
        assert error_of(tmp_path, data) == (
            f"a.toml: cron.c.args.size: {mod}:Job has no parameter 'size' (it takes: interval, schedule, timezone)"
        )


class TestRun:
    @pytest.mark.parametrize(("section", "cls"), [("actors", "SyncRun"), ("cron", "SyncJob")])
    def test_a_plain_def_run_is_refused(self, tmp_path: Path, mod: str, section: str, cls: str) -> None:
        """run() must be async def, for actors and cron tasks alike."""
        data = {section: {"x": {"target": f"{mod}:{cls}", "interval": 5} if section == "cron"
                          else {"target": f"{mod}:{cls}"}}}
        assert error_of(tmp_path, data) == (
            f"a.toml: {section}.x.target: {mod}:{cls}.run is a plain def: declare it async def run(self)"
        )

    def test_a_class_without_run_is_refused(self, tmp_path: Path, mod: str) -> None:
        """An Actor subclass that does not define run() is refused at check time."""
        assert error_of(tmp_path, actor(f"{mod}:NoRun")) == (
            f"a.toml: actors.x.target: {mod}:NoRun does not define async def run(self)"
        )


class TestImport:
    def test_a_module_that_exits_on_import_is_an_import_error(self, tmp_path: Path, mod: str) -> None:
        """sys.exit() while importing the target is reported, not taken as the loader's own exit."""
        (tmp_path / f"{mod}_exits.py").write_text("import sys\nsys.exit(0)\n")
        try:
            assert error_of(tmp_path, actor(f"{mod}_exits:Plain")) == (
                f'a.toml: actors.x.target: cannot import "{mod}_exits:Plain": the module called sys.exit(0)'
            )
        finally:
            sys.modules.pop(f"{mod}_exits", None)


class TestCwd:
    def test_a_cwd_that_does_not_exist_is_refused(self, tmp_path: Path, mod: str) -> None:
        """cwd is resolved from the config's folder and must be a directory."""
        assert error_of(tmp_path, actor(f"{mod}:Plain", cwd="data")) == (
            f'a.toml: actors.x.cwd: not a directory (create it or fix the path), got "{tmp_path}/data"'
        )
        (tmp_path / "data").mkdir()
        config = parse_config(actor(f"{mod}:Plain", cwd="data"), source=tmp_path / "a.toml")
        assert config.actors[0].cwd == str(tmp_path / "data")

    def test_without_importing_targets_the_file_system_is_not_consulted(self, tmp_path: Path, mod: str) -> None:
        """A CLI client that only looks for the socket (import_targets=False) does not check cwd or args."""
        config = parse_config(actor(f"{mod}:Takes", cwd="nowhere"), source=tmp_path / "a.toml", import_targets=False)
        assert config.actors[0].cwd == str(tmp_path / "nowhere")


def test_check_command_reports_it_in_one_line(tmp_path: Path) -> None:
    """`actorsup check` exits 2 with the one-line message for a constructor argument mismatch."""
    (tmp_path / "cfg_targets_cli.py").write_text(ACTORS)
    path = tmp_path / "actorsup.toml"
    path.write_text(textwrap.dedent('''
        [actors.web]
        target = "cfg_targets_cli:Takes"
        args = { url = "u", timeout = 5 }
    '''))
    result = subprocess.run([sys.executable, "-m", "supervisor", "check", str(path)], capture_output=True,
                            text=True, timeout=60, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"actorsup: {path}: actors.web.args.timeout: cfg_targets_cli:Takes has no "
                             "parameter 'timeout' (it takes: url, retries)\n")
