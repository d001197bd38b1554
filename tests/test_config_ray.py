"""kind = "ray", an actor's ray table and [ray]: each bad value is one `file: key.path: problem` line."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata, util
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import parse_config
from supervisor.config._convert import UNKNOWN_KEY
from supervisor.exceptions import ConfigError
from tests.raycluster import needs_ray

STEADY = "tests.sample_actors:Steady"


def parse(text: str) -> Any:
    return parse_config(tomllib.loads(text), label="ray.toml", source=Path.cwd() / "ray.toml")


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


@pytest.fixture
def ray_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray looks installed in a supported version, whether or not this venv has the extra."""
    monkeypatch.setattr(util, "find_spec", lambda name, *a: object() if name == "ray" else None)
    monkeypatch.setattr(metadata, "version", lambda name: "2.60.0")


class TestRayActor:
    @pytest.mark.usefixtures("ray_installed")
    def test_ray_actor_with_options(self) -> None:
        """A ray actor keeps its ray table, and [ray] its address and namespace."""
        config = parse(f"""
[ray]
address = "127.0.0.1:6379"
namespace = "prod"
[actors.trainer]
target = "{STEADY}"
kind = "ray"
ray = {{ num_cpus = 1, resources = {{ big_node = 0.1 }}, scheduling_strategy = "SPREAD" }}
""")
        spec = config.actors[0]
        assert (spec.kind, spec.ray.num_cpus, spec.ray.resources, spec.ray.scheduling_strategy) == (
            "ray", 1.0, {"big_node": 0.1}, "SPREAD")
        assert (config.ray.address, config.ray.namespace) == ("127.0.0.1:6379", "prod")

    def test_without_ray(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """kind = "ray" where Ray is not importable names the extra to install."""
        monkeypatch.setattr(util, "find_spec", lambda name, *a: None)
        assert error(f'[actors.t]\ntarget = "{STEADY}"\nkind = "ray"\n') == (
            "ray.toml: actors.t.kind: kind = \"ray\" needs Ray: pip install 'actorsup[ray]'")

    def test_unsupported_ray_version(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A Ray outside >=2.40,<3 is named with the range."""
        monkeypatch.setattr(util, "find_spec", lambda name, *a: object())
        monkeypatch.setattr(metadata, "version", lambda name: "2.9.3")
        assert error(f'[actors.t]\ntarget = "{STEADY}"\nkind = "ray"\n') == (
            "ray.toml: actors.t.kind: kind = \"ray\" needs ray>=2.40,<3, but Ray 2.9.3 is installed: "
            "pip install 'actorsup[ray]'")

    @pytest.mark.usefixtures("ray_installed")
    def test_unknown_key_in_ray_table(self) -> None:
        """A misspelt key in an actor's ray table is blamed with its whole path."""
        assert error(f'[actors.t]\ntarget = "{STEADY}"\nkind = "ray"\nray = {{ num_cpu = 1 }}\n') == (
            f"ray.toml: actors.t.ray.num_cpu: {UNKNOWN_KEY}")

    @pytest.mark.usefixtures("ray_installed")
    def test_bad_strategy(self) -> None:
        """scheduling_strategy is DEFAULT or SPREAD."""
        message = error(f'[actors.t]\ntarget = "{STEADY}"\nkind = "ray"\nray = {{ scheduling_strategy = "PACK" }}\n')
        assert message.startswith("ray.toml: actors.t.ray.scheduling_strategy: ")
        assert message.endswith('got "PACK"')

    @pytest.mark.usefixtures("ray_installed")
    def test_negative_resource(self) -> None:
        """A resource amount below zero is refused with its key."""
        message = error(f'[actors.t]\ntarget = "{STEADY}"\nkind = "ray"\nray = {{ resources = {{ gpu_x = -1 }} }}\n')
        assert message.startswith("ray.toml: actors.t.ray.resources.gpu_x: ")
        assert message.endswith("got -1")

    def test_ray_table_on_process_actor(self) -> None:
        """A ray table on an actor that is not kind = "ray" says to add the kind."""
        assert error(f'[actors.t]\ntarget = "{STEADY}"\nray = {{ num_cpus = 1 }}\n') == (
            'ray.toml: actors.t.ray: only a ray actor has a ray table: add kind = "ray" (or remove ray)')

    @pytest.mark.usefixtures("ray_installed")
    def test_target_must_be_an_actor(self) -> None:
        """A ray actor's target is checked as a process actor's is: an actors.Actor subclass."""
        assert error('[actors.t]\ntarget = "pathlib:Path"\nkind = "ray"\n') == (
            "ray.toml: actors.t.target: 'pathlib:Path' is not a subclass of actors.Actor")

    def test_ray_key_on_cron(self) -> None:
        """A cron task has no ray table."""
        assert error('[cron.c]\ntarget = "tests.sample_actors:CronOk"\ninterval = 5\nray = {}\n') == (
            f"ray.toml: cron.c.ray: {UNKNOWN_KEY}")


class TestRaySettings:
    @pytest.mark.parametrize("address", ["local", "auto", "10.0.0.5:6379", "[::1]:6379", "head.example:6379"])
    def test_good_addresses(self, address: str) -> None:
        """local, auto and HOST:PORT are accepted."""
        assert parse(f'[ray]\naddress = "{address}"\n').ray.address == address

    @pytest.mark.parametrize("address", ["10.0.0.5", "10.0.0.5:", ":6379", "host:99999", "lokal", "a b:1"])
    def test_bad_address(self, address: str) -> None:
        """Anything else names the three forms."""
        assert error(f'[ray]\naddress = "{address}"\n') == (
            f'ray.toml: ray.address: must be "local", "auto" or HOST:PORT (such as "10.0.0.5:6379"), '
            f'got "{address}"')

    def test_ray_client_address(self) -> None:
        """ray:// (Ray Client) is refused with what to do instead."""
        assert error('[ray]\naddress = "ray://head:10001"\n') == (
            "ray.toml: ray.address: Ray Client addresses (ray://) are not supported: run the supervisor on a "
            'node of the cluster and use "auto" or the GCS\'s HOST:PORT, got "ray://head:10001"')

    @pytest.mark.parametrize("listen", ["10.0.0.7", "10.0.0.7:7300", "[::1]:7300"])
    def test_good_listen(self, listen: str) -> None:
        """listen is HOST or HOST:PORT."""
        assert parse(f'[ray]\nlisten = "{listen}"\n').ray.listen == listen

    @pytest.mark.parametrize("listen", ["", "10.0.0.7:x", "10.0.0.7:70000", ":7300"])
    def test_bad_listen(self, listen: str) -> None:
        """A listen value that is neither is refused with examples."""
        assert error(f'[ray]\nlisten = "{listen}"\n') == (
            f'ray.toml: ray.listen: must be HOST or HOST:PORT (such as "10.0.0.7" or "10.0.0.7:7300"), '
            f'got "{listen}"')

    def test_unknown_key(self) -> None:
        """An unknown key in [ray] is blamed with its path."""
        assert error('[ray]\nadress = "auto"\n') == f"ray.toml: ray.adress: {UNKNOWN_KEY}"

    def test_timeouts_positive(self) -> None:
        """connect_timeout must be a positive number."""
        message = error("[ray]\nconnect_timeout = 0\n")
        assert message.startswith("ray.toml: ray.connect_timeout: ")
        assert message.endswith("got 0")


def test_check_exit_status_without_ray(tmp_path: Path) -> None:
    """`actorsup check` of a ray config without Ray prints the one line and exits 2."""
    config = tmp_path / "a.toml"
    config.write_text(f'[actors.t]\ntarget = "{STEADY}"\nkind = "ray"\n')
    code = (
        "import importlib.util as u, sys; real = u.find_spec; "
        "u.find_spec = lambda n, *a: None if n == 'ray' else real(n, *a); "
        "from supervisor.app._cli import main; sys.exit(main(['check', sys.argv[1]]))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 2, result.stderr
    assert f"{config}: actors.t.kind: kind = \"ray\" needs Ray: pip install 'actorsup[ray]'" in result.stderr
    assert "Traceback" not in result.stderr


@needs_ray
def test_run_unreachable_address_exits_2(tmp_path: Path) -> None:
    """`actorsup run` with a [ray] address where nothing listens prints one line and exits 2."""
    config = tmp_path / "a.toml"
    config.write_text(f'[ray]\naddress = "127.0.0.1:9"\n[actors.t]\ntarget = "{STEADY}"\nkind = "ray"\n')
    result = subprocess.run([sys.executable, "-m", "supervisor", "run", str(config)], capture_output=True, text=True,
                            timeout=60, cwd=Path(__file__).parent.parent)
    assert result.returncode == 2
    assert result.stderr == "actorsup: could not reach Ray at 127.0.0.1:9: Connection refused\n"
