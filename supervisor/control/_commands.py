"""The CLI commands that talk to a running supervisor.

:func:`add_control_commands` adds them to the main argparse CLI. Each command
stores ``func(args) -> exit code`` and can be called in-process (tests do).
Exit codes: 0 done, 1 no supervisor or the request failed, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import ControlError
from ._client import ControlClient
from ._errors import BadSocketPath, NoReply, NotListening, RequestFailed
from ._locate import Located, demo_socket, locate_socket

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["add_control_commands", "resolve_socket", "socket_path_for"]

DEFAULT_CONFIG = "actorsup.toml"
SOCKET_ENV = "ACTORSUP_SOCKET"
_USAGE_CODES = {"bad_request", "bad_argument", "unknown_command", "duplicate_key"}

Func = Callable[[argparse.Namespace], int]


class _Usage(Exception):
    """The command line cannot be acted on; exit 2."""


def socket_path_for(config: Config) -> Path:
    """Where a supervisor running ``config`` listens: ``control_socket`` or ``state_dir/actorsup.sock``."""
    return config.supervisor.control_socket or config.supervisor.state_dir / "actorsup.sock"


def _located(config: Path) -> Located:
    try:
        return locate_socket(config)
    except FileNotFoundError:
        raise _Usage(f"{config}: file not found; pass -c CONFIG or --socket PATH") from None
    except OSError as exc:
        raise _Usage(f"{config}: cannot read: {exc.strerror or exc}") from None


def locate(args: argparse.Namespace) -> Located:
    """``--socket``, else ``-c CONFIG``, else ``$ACTORSUP_SOCKET``, else ``./actorsup.toml``,
    else the demo's socket (see :func:`demo_socket`) when a demo runs.

    A config is only read for its socket, never validated: a supervisor stays
    reachable while its config file is being edited.
    """
    if getattr(args, "socket", None):
        return Located(Path(args.socket), None)
    if getattr(args, "config", None):
        return _located(Path(args.config))
    if os.environ.get(SOCKET_ENV):
        return Located(Path(os.environ[SOCKET_ENV]), None)
    if Path(DEFAULT_CONFIG).is_file():
        return _located(Path(DEFAULT_CONFIG))
    if (demo := demo_socket()).is_socket():
        return Located(demo, None)  # `actorsup run` with no config, started from anywhere
    raise _Usage(f"no control socket given: pass --socket PATH or -c CONFIG "
                 f"(or set {SOCKET_ENV}; there is no ./{DEFAULT_CONFIG} here, and no demo is running)")


def resolve_socket(args: argparse.Namespace) -> Path:
    """The control socket the command line points at (see :func:`locate`)."""
    return locate(args).path


def _err(message: str) -> None:
    print(f"actorsup: {message}", file=sys.stderr)


def _command(body: Callable[[argparse.Namespace, Path], int]) -> Func:
    """Resolve the socket, run ``body``, and turn every expected failure into one stderr line."""

    @wraps(body)
    def run(args: argparse.Namespace) -> int:
        located: Located | None = None
        try:
            located = locate(args)
            return body(args, located.path)
        except _Usage as exc:
            return _fail(args, "usage", str(exc), 2)
        except RequestFailed as exc:
            shown = exc.cmd.replace("_", " ")
            message = exc.message if exc.message.startswith((exc.cmd, shown)) else f"{shown}: {exc.message}"
            return _fail(args, exc.code, message, 2 if exc.code in _USAGE_CODES else 1)
        except NotListening as exc:
            message = str(exc)
            if located is not None and located.problem:
                message += f" (the socket path comes from a config that does not parse: {located.problem})"
            return _fail(args, "not_listening", message, 1)
        except BadSocketPath as exc:
            return _fail(args, "bad_socket_path", str(exc), 2)
        except ControlError as exc:
            return _fail(args, "control_error", str(exc), 1)
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # `actorsup logs -f | head`: the reader left
            sys.stderr.close()
            return 0

    return run


def _fail(args: argparse.Namespace, code: str, message: str, status: int) -> int:
    """Report a failure: one stderr line, or with --json one JSON object on stdout."""
    if getattr(args, "json", False):
        _print_json({"ok": False, "code": code, "error": message})
    else:
        _err(message)
    return status


def _render() -> Any:
    from . import _render  # rich is only paid for by human output

    return _render


def _log_line() -> Any:
    from ._logline import log_line

    return log_line


def _console() -> Any:
    from rich.console import Console  # rich is only paid for by human output

    # Piped output is not cut: a script grepping it wants whole rows.
    return Console(width=None if sys.stdout.isatty() else 1000)


def _width(console: Any) -> int | None:
    """The terminal's width for tables to fit in; None when piped (nothing is dropped)."""
    return int(console.width) if sys.stdout.isatty() else None


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


def _client(args: argparse.Namespace, path: Path) -> ControlClient:
    return ControlClient(path, timeout=args.timeout)


# --- commands ------------------------------------------------------------------
@_command
def cmd_status(args: argparse.Namespace, path: Path) -> int:
    if not args.watch:
        rows = _rows(args, path)
        if args.json:
            _print_json(rows)
        else:
            console = _console()
            console.print(_render().status_table(rows, _width(console)))
        return 0
    return _watch(args, path)


def _rows(args: argparse.Namespace, path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = _ask(args, path, "status")
    return select_rows(rows, getattr(args, "names", None) or [])


def select_rows(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """The rows that ``names`` (names or globs) match, with everything inside a matching group."""
    if not names:
        return rows
    parent = {row["name"]: row.get("group") for row in rows}

    def matches(name: str | None) -> bool:
        while name is not None:
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in names):
                return True
            name = parent.get(name)
        return False

    return [row for row in rows if matches(row["name"])]


def _ask(args: argparse.Namespace, path: Path, cmd: str, **request: Any) -> Any:
    with _client(args, path) as client:
        return client.request(cmd, **request)


def _watch(args: argparse.Namespace, path: Path) -> int:
    # One connection per refresh: the server closes a connection that stays
    # silent longer than its idle timeout, and --interval may be longer.
    count = 0
    try:
        if args.json:
            while args.count is None or count < args.count:
                _print_json(_rows(args, path))
                count += 1
                if args.count is None or count < args.count:
                    time.sleep(args.interval)
            return 0
        from rich.live import Live

        console = _console()
        with Live(_render().status_table(_rows(args, path), _width(console)), console=console,
                  auto_refresh=False) as live:
            count = 1
            while args.count is None or count < args.count:
                time.sleep(args.interval)
                live.update(_render().status_table(_rows(args, path), _width(console)), refresh=True)
                count += 1
    except KeyboardInterrupt:
        pass
    return 0


@_command
def cmd_heartbeat_status(args: argparse.Namespace, path: Path) -> int:
    with _client(args, path) as client:
        report = client.request("heartbeat_status")
    if args.json:
        _print_json(report)
    else:
        console = _console()
        for part in _render().heartbeat_tables(report, _width(console)):
            console.print(part)
    return 1 if args.check and report.get("status") != "healthy" else 0


_UP = {"running"}
_DOWN = {"errored", "backoff", "failed"}  # "stopped" is where start and restart begin


def _row(client: ControlClient, name: str) -> dict[str, Any] | None:
    rows: list[dict[str, Any]] = client.request("status")
    return next((r for r in rows if r.get("name") == name), None)


def _settle(client: ControlClient, name: str, before: str | None, seconds: float) -> dict[str, Any] | None:
    """The actor's status row once it is up or has given up (or ``seconds`` have passed).

    A failed or errored actor may still show that state just after the request, before
    it starts again: its state must have left ``before`` for a failure to count.
    """
    deadline = time.monotonic() + seconds
    moved = before not in _DOWN
    while True:
        row = _row(client, name)
        state = None if row is None else row.get("state")
        moved = moved or state != before
        if row is None or row.get("kind") in ("cron", "group") or state in _UP or (moved and state in _DOWN):
            return row
        if time.monotonic() >= deadline:
            return row
        time.sleep(0.05)


def _lifecycle(cmd: str, done: str) -> Func:
    @_command
    def run(args: argparse.Namespace, path: Path) -> int:
        with _client(args, path) as client:
            failed = 0
            for name in args.names:  # each: an actor, a group, `all` or a glob
                failed += _one_lifecycle(client, args, cmd, done, name)
        return 1 if failed else 0

    run.__name__ = f"cmd_{cmd}"
    return run


def _one_lifecycle(client: ControlClient, args: argparse.Namespace, cmd: str, done: str, name: str) -> int:
    """One name of start/stop/restart; 1 when the actor did not come up."""
    before = _row(client, name) if cmd != "stop" else None
    client.request(cmd, name=name)
    # The request returns once the actor is asked to run: whether it comes up (its code
    # may no longer import) shows in its state a moment later. A group, `all` or a glob
    # has no row of that name: it is done once the supervisor answers.
    row = None if cmd == "stop" or before is None else _settle(client, name, before.get("state"), args.timeout)
    if row is None or row.get("kind") in ("cron", "group") or row.get("state") in _UP:
        pid = f" (pid {row['pid']})" if row is not None and row.get("pid") else ""
        print(f"{done} {name}{pid}")
        return 0
    state, error = row.get("state"), row.get("last_error")
    why = f"it is {state}" + (f": {_short_error(error)}" if error else "")
    if state not in _DOWN:
        why = f"it is still {state} after {args.timeout:g}s"
    _fail(args, "not_running", f"{cmd} {name}: {why}; see `actorsup logs {name}`", 1)
    return 1


def _short_error(error: Any) -> str:
    if isinstance(error, dict):
        error = error.get("error") or error
    text = " ".join(str(error).split())
    return text if len(text) <= 200 else text[:199] + "…"


cmd_start = _lifecycle("start", "started")
cmd_stop = _lifecycle("stop", "stopped")
cmd_restart = _lifecycle("restart", "restarted")


@_command
def cmd_scale(args: argparse.Namespace, path: Path) -> int:
    with _client(args, path) as client:
        result = client.request("scale", name=args.name, count=args.count)
    if getattr(args, "json", False):
        _print_json(result)
    else:
        print(f"scaled {args.name} to {args.count}: started {result['started'] or 'none'}, "
              f"stopped {result['stopped'] or 'none'}")
    return 0


@_command
def cmd_logs(args: argparse.Namespace, path: Path) -> int:
    request: dict[str, Any] = {"n": args.n, "actor": args.name}
    render = (lambda raw: raw.decode("utf-8", "replace").rstrip("\n")) if args.json else _log_line()
    with _client(args, path) as client:
        if not args.follow:
            for event in client.request("logs", **request):
                print(json.dumps(event, ensure_ascii=False) if args.json else _log_line()(event))
            return 0
        try:
            for raw in client.stream("logs", follow=True, **request):
                print(render(raw), flush=True)
        except KeyboardInterrupt:
            pass
    return 0


@_command
def cmd_events(args: argparse.Namespace, path: Path) -> int:
    with _client(args, path) as client:
        try:
            for raw in client.stream("events"):
                sys.stdout.write(raw.decode("utf-8", "replace"))
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
    return 0


@_command
def cmd_cron_list(args: argparse.Namespace, path: Path) -> int:
    with _client(args, path) as client:
        rows = client.request("cron_list")
    if args.json:
        _print_json(rows)
    elif not rows:
        print("no cron tasks")
    else:
        console = _console()
        console.print(_render().generic_table(rows, width=_width(console)))
    return 0


@_command
def cmd_cron_trigger(args: argparse.Namespace, path: Path) -> int:
    with _client(args, path) as client:
        result = client.request("cron_trigger", name=args.name)
    if args.json:
        _print_json(result)
    else:
        print(f"triggered {args.name}: run_id {result['run_id']}")
    return 0


@_command
def cmd_reload(args: argparse.Namespace, path: Path) -> int:
    with _client(args, path) as client:
        try:
            diff = client.request("reload")
        except RequestFailed as exc:
            if exc.code != "config_error":
                raise
            return _fail(args, exc.code, f"reload rejected: {exc.message}", 1)
    if args.json:
        _print_json(diff)
    else:
        parts = [f"{key} {', '.join(diff.get(key) or []) or '-'}" for key in ("added", "removed", "changed")]
        if diff.get("logs"):  # [logs] changed: which sinks
            parts.append("logs " + ", ".join(diff["logs"]))
        changed = any(diff.get(key) for key in ("added", "removed", "changed", "logs"))
        print("reloaded: " + ("; ".join(parts) if changed else "no changes"))
    return 0


@_command
def cmd_top(args: argparse.Namespace, path: Path) -> int:
    from ._top import _NotATerminal, run_top

    try:
        return run_top(path, interval=args.interval, timeout=args.timeout, lines=args.lines)
    except _NotATerminal:
        raise _Usage("top needs a terminal (stdin and stdout); piped, use "
                     "`actorsup status --watch --json`") from None


@_command
def cmd_shutdown(args: argparse.Namespace, path: Path) -> int:
    # The server may go away before its reply: that is the shutdown we asked for.
    with _client(args, path) as client, suppress(NoReply):
        client.request("shutdown")
    print(f"supervisor at {path} is shutting down")
    return 0


# --- argparse ------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    which = parent.add_mutually_exclusive_group()
    which.add_argument("--socket", metavar="PATH", help="control socket of the supervisor")
    which.add_argument("-c", "--config", metavar="CONFIG",
                       help=f"its config file (default: ${SOCKET_ENV}, then ./{DEFAULT_CONFIG})")
    parent.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS",
                        help="how long to wait for a reply, and for start/restart to come up (default: 30)")
    return parent


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, such as 5 or 0.5 (got {text!r})")
    return value


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print machine-readable JSON (errors too: {\"ok\": false, \"code\", \"error\"})")


def _command_parser(subparsers: Any, name: str, text: str, examples: str, *,
                    parents: list[argparse.ArgumentParser] | None = None,
                    description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand whose --help has a description and worked examples."""
    import textwrap  # argparse's own import: free

    description = textwrap.fill(description or text[:1].upper() + text[1:] + ".", 78)
    return subparsers.add_parser(  # type: ignore[no-any-return]
        name, parents=parents or [], help=text, description=description,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter)


def add_control_commands(subparsers: Any) -> None:
    """Add status, heartbeat, start, stop, restart, logs, events, cron, reload, shutdown."""
    common = [_common()]

    p = _command_parser(subparsers, "status", "show the tree of groups, actors and cron tasks", """
actorsup status                      # state, pid, uptime, restarts, CPU, RSS
actorsup status 'reader*' pipeline   # these rows (a group with its members)
actorsup status --json | jq '.[] | select(.state != "running")'
actorsup status --watch --interval 2 # redraw every 2 s until Ctrl-C""", parents=common)
    p.add_argument("names", metavar="NAME", nargs="*", help="only these (names or globs; a group with its members)")
    _json_flag(p)
    p.add_argument("--watch", action="store_true", help="redraw live until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="--watch refresh period (default: 1)")
    p.add_argument("--count", type=int, default=None, metavar="N",
                   help="--watch: stop after N refreshes")
    p.set_defaults(func=cmd_status)

    hb = _command_parser(subparsers, "heartbeat", "heartbeat monitor commands", """
actorsup heartbeat status""")
    hb_sub = hb.add_subparsers(dest="heartbeat_command", required=True, metavar="COMMAND")
    p = _command_parser(hb_sub, "status", "overall health, counts and components", """
actorsup heartbeat status
actorsup heartbeat status --check    # exit 1 unless healthy (HEALTHCHECK)""", parents=common)
    _json_flag(p)
    p.add_argument("--check", action="store_true",
                   help="exit 1 when the overall status is not healthy (error or unknown)")
    p.set_defaults(func=cmd_heartbeat_status)

    for name, func, text in (("start", cmd_start, "start stopped actors and wait until they run"),
                             ("stop", cmd_stop, "stop actors (they stay stopped)"),
                             ("restart", cmd_restart, "restart actors and wait until they run again")):
        p = _command_parser(subparsers, name, text, f"""
actorsup {name} fetcher
actorsup {name} 'reader*' pipeline   # a glob, a group""", parents=common)
        p.add_argument("names", metavar="NAME", nargs="+",
                       help="an actor, a group, `all`, or a shell-style glob such as 'reader*'")
        p.set_defaults(func=func)

    p = _command_parser(subparsers, "scale", "change the number of instances of an actor", """
actorsup scale reader 4""", parents=common)
    p.add_argument("name", metavar="NAME", help="an actor with `instances` in its config")
    p.add_argument("count", metavar="N", type=int, help="how many instances to run")
    _json_flag(p)
    p.set_defaults(func=cmd_scale)

    p = _command_parser(subparsers, "logs", "buffered log lines, then -f follows", """
actorsup logs                        # everything in the supervisor's buffer
actorsup logs fetcher -n 20          # the last 20 lines of one actor
actorsup logs -f --json | jq .event  # follow, as JSON lines""", parents=common)
    p.add_argument("name", metavar="NAME", nargs="?", default=None, help="only this actor's lines")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    p.add_argument("-n", "--lines", dest="n", type=int, default=None, metavar="N",
                   help="only the last N buffered lines")
    _json_flag(p)
    p.set_defaults(func=cmd_logs)

    p = _command_parser(subparsers, "events", "stream state changes as JSON lines", """
actorsup events | jq 'select(.state == "errored")'""", parents=common)
    p.set_defaults(func=cmd_events)

    cron = _command_parser(subparsers, "cron", "cron task commands", """
actorsup cron list
actorsup cron trigger nightly""")
    cron_sub = cron.add_subparsers(dest="cron_command", required=True, metavar="COMMAND")
    p = _command_parser(cron_sub, "list", "every cron task and its next run", """
actorsup cron list --json""", parents=common)
    _json_flag(p)
    p.set_defaults(func=cmd_cron_list)
    p = _command_parser(cron_sub, "trigger", "run a cron task now", """
actorsup cron trigger nightly""", parents=common)
    p.add_argument("name", metavar="NAME", help="the cron task, as named in the config ([cron.NAME])")
    _json_flag(p)
    p.set_defaults(func=cmd_cron_trigger)

    p = _command_parser(subparsers, "reload", "re-read the config and apply it", """
actorsup reload                      # prints what was added, removed, changed
actorsup reload --json""", parents=common,
                        description="Re-read the config and apply it. An invalid config is rejected "
                        "and the running one kept (exit 1).")
    _json_flag(p)
    p.set_defaults(func=cmd_reload)

    p = _command_parser(subparsers, "top", "a live view: actors, and the selected one's logs", """
actorsup top                         # up/down or k/j select an actor, q quits
actorsup top --interval 2 --lines 20""", parents=common,
                        description="A live view in a terminal: every actor's state, restarts, CPU, RSS "
                        "and beat age, and the latest log lines of the selected actor. Up/down (or k/j) "
                        "select, q or Ctrl-C quit.")
    p.add_argument("--interval", type=_seconds, default=1.0, metavar="SECONDS",
                   help="refresh period (default: 1)")
    p.add_argument("--lines", type=int, default=10, metavar="N", help="log lines shown (default: 10)")
    p.set_defaults(func=cmd_top)

    p = _command_parser(subparsers, "shutdown", "stop every actor and exit", """
actorsup shutdown -c /etc/myapp/actorsup.toml""", parents=common)
    p.set_defaults(func=cmd_shutdown)
