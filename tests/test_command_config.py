"""Command actors in the config: `actorsup check` accepts the design card, and each bad input is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.config import parse_config

DESIGN_CARD = """\
[actors.cache]
kind = "command"
command = ["redis-server", "--port", "6390", "--supervised", "systemd"]   # argv; a string is split as a shell would
env = { LANG = "C.UTF-8" }
cwd = "data"
notify = true        # sd_notify on $NOTIFY_SOCKET: READY=1 marks it started, WATCHDOG=1 is a beat,
                     # STATUS=... shows in status; WATCHDOG_USEC is set from heartbeat_timeout
probe = { http = "http://127.0.0.1:8080/healthz", every = 5.0, timeout = 1.0, failures = 3 }
                     # or tcp = "127.0.0.1:6390", or exec = ["redis-cli", "-p", "6390", "ping"]
user = "nobody"      # when the supervisor runs as root
"""


def _check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "actorsup.toml"
    config.write_text(text)
    return subprocess.run([sys.executable, "-m", "supervisor", "check", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_check_accepts_the_design_cards_command_example(tmp_path: Path) -> None:
    """`actorsup check` accepts the design card's [actors.cache] command actor (user only when root)."""
    (tmp_path / "data").mkdir()
    text = DESIGN_CARD if os.geteuid() == 0 else DESIGN_CARD.replace('user = "nobody"', "")
    result = _check(tmp_path, text)
    assert result.returncode == 0, result.stderr


BAD = [
    ('kind = "command"',
     'actors.a.command: required key is missing (kind = "command" needs command = ["program", "arg"])'),
    ('kind = "command"\ncommand = ["sleep", "1"]\ntarget = "app:Worker"',
     'actors.a.target: kind = "command" runs `command`, not a Python class: remove target, got "app:Worker"'),
    ('kind = "command"\ncommand = []', "actors.a.command: expected a non-empty argv list, got []"),
    ('kind = "command"\ncommand = "echo \'unclosed"', "actors.a.command: expected a closing ' quote"),
    ('kind = "command"\ncommand = "sleep 1"\nprobe = { every = 1.0 }',
     "actors.a.probe: expected exactly one of http, tcp or exec"),
    ('kind = "command"\ncommand = "sleep 1"\nprobe = { http = "http://a/", tcp = "a:1" }',
     "actors.a.probe: expected exactly one of http, tcp or exec, not http and tcp"),
    ('kind = "command"\ncommand = "sleep 1"\nprobe = { http = "ftp:/nowhere" }',
     'actors.a.probe.http: expected an http:// or https:// URL with a host, got "ftp:/nowhere"'),
    ('kind = "command"\ncommand = "sleep 1"\nuser = "no-such-user-actorsup"', "actors.a.user: user not found"),
    ('kind = "command"\ncommand = "sleep 1"\nuser = "root:no-such-group-actorsup"',
     'actors.a.user: group not found (check /etc/group or `getent group`), got "no-such-group-actorsup"'),
    ('kind = "command"\ncommand = "sleep 1"\nuser = "root:"', 'actors.a.user: expected "USER" or "USER:GROUP"'),
    ('command = "sleep 1"\ntarget = "app:Worker"', 'actors.a.command: only a command actor has command'),
    ('kind = "command"\ncommand = "sleep"\nargs = { seconds = 1 }',
     "actors.a.args: a command actor has no constructor: put its arguments in command"),
]


@pytest.mark.parametrize(("table", "message"), BAD)
def test_each_bad_command_table_is_one_line_and_exit_2(tmp_path: Path, table: str, message: str) -> None:
    """A bad command actor table: exit 2 and one line naming actors.a.KEY, never a traceback."""
    result = _check(tmp_path, f"[actors.a]\n{table}\n")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert message in lines[0] and lines[0].startswith("actorsup: ")


def test_watchdog_from_ready_only_when_the_table_sets_heartbeat_timeout() -> None:
    """The watchdog deadline runs from READY=1 only when the actor's own table sets heartbeat_timeout."""
    actors = {"a": {"kind": "command", "command": "sleep 1", "notify": True, "heartbeat_timeout": 3.0},
              "b": {"kind": "command", "command": "sleep 1", "notify": True}}
    config = parse_config({"supervisor": {"heartbeat_interval": 1.0, "heartbeat_timeout": 9.0}, "actors": actors})
    a, b = config.actors
    assert (a.watchdog_from_ready, a.heartbeat_timeout) == (True, 3.0)
    assert (b.watchdog_from_ready, b.heartbeat_timeout) == (False, 9.0)
    assert a.command_spec.argv == ("sleep", "1") and a.command_spec.notify


def test_cron_tables_have_no_command_keys() -> None:
    """command, notify, probe and user are keys of actors only: in [cron.NAME] they are unknown."""
    with pytest.raises(Exception, match=r"cron.t.command: unknown key"):
        parse_config({"cron": {"t": {"target": "a:B", "interval": 1.0, "command": "x"}}}, import_targets=False)


