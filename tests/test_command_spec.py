"""A command actor's own keys validated together, with the key path the config error needs."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.command._errors import SpecError
from supervisor.command._privileges import Credentials
from supervisor.command._probe import ProbeSpec
from supervisor.command._spec import CommandSpec, parse_command_spec


def _config_error(table: dict[str, Any], **ids: int) -> str:
    """The one line the config layer would print for ``table`` as actors.cache."""
    with pytest.raises(SpecError) as info:
        parse_command_spec(table, **ids)
    return f"actorsup.toml: actors.cache.{info.value.key}: {info.value}"


class TestParseCommandSpec:
    def test_full_table(self) -> None:
        """command, notify, probe and user together give one frozen CommandSpec."""
        spec = parse_command_spec(
            {"command": "redis-server --port 6390 --supervised systemd", "notify": True,
             "probe": {"tcp": "127.0.0.1:6390", "every": 5}, "user": "nobody", "env": {"A": "1"}},
            euid=0, egid=0,
        )
        assert spec == CommandSpec(
            ("redis-server", "--port", "6390", "--supervised", "systemd"), True,
            ProbeSpec("tcp", tcp=("127.0.0.1", 6390), every=5.0),
            Credentials(65534, 65534, (), "nobody", "/nonexistent"),
        )

    def test_minimal(self) -> None:
        """Only command: no notify, no probe, the supervisor's own user."""
        assert parse_command_spec({"command": ["sleep", "1000"]}) == CommandSpec(("sleep", "1000"))

    @pytest.mark.parametrize(
        ("table", "line"),
        [
            ({}, 'actorsup.toml: actors.cache.command: required key is missing (kind = "command" needs '
                 'command = ["program", "arg"])'),
            ({"command": "x", "target": "a:B"}, 'actorsup.toml: actors.cache.target: kind = "command" runs '
                                                '`command`, not a Python class: remove target, got "a:B"'),
            ({"command": []}, "actorsup.toml: actors.cache.command: expected a non-empty argv list, got []"),
            ({"command": "sleep 'x"}, """actorsup.toml: actors.cache.command: expected a closing ' quote, """
                                      """got "sleep 'x\""""),
            ({"command": "x", "notify": "yes"},
             'actorsup.toml: actors.cache.notify: expected true or false, got "yes"'),
            ({"command": "x", "probe": {}}, "actorsup.toml: actors.cache.probe: expected exactly one of http, tcp or "
                                            "exec, got {}"),
            ({"command": "x", "probe": {"http": "ftp://h"}},
             'actorsup.toml: actors.cache.probe.http: expected an http:// or https:// URL with a host, got "ftp://h"'),
            ({"command": "x", "user": "no-such-user-x"},
             'actorsup.toml: actors.cache.user: user not found (check /etc/passwd or `getent passwd`), '
             'got "no-such-user-x"'),
        ],
    )
    def test_each_problem_is_one_line(self, table: dict[str, Any], line: str) -> None:
        """Every bad input from the issue is one error line of the usual form."""
        assert _config_error(table, euid=0, egid=0) == line

    def test_user_when_not_root(self) -> None:
        """user set while the supervisor is not root: the error says root is needed."""
        assert _config_error({"command": "x", "user": "nobody"}, euid=1000, egid=1000) == (
            'actorsup.toml: actors.cache.user: needs the supervisor to run as root (it runs as uid 1000), got "nobody"')
