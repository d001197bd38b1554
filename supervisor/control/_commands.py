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
from ._errors import NoReply, NotListening, RequestFailed
from ._locate import Located, locate_socket
from ._render import generic_table, heartbeat_tables, log_line, status_table

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
    """``--socket``, else ``-c CONFIG``, else ``$ACTORSUP_SOCKET``, else ``./actorsup.toml``.

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
    raise _Usage(f"no control socket given: pass --socket PATH or -c CONFIG "
                 f"(or set {SOCKET_ENV}; there is no ./{DEFAULT_CONFIG} here)")


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
            _err(str(exc))
            return 2
        except RequestFailed as exc:
            shown = exc.cmd.replace("_", " ")
            _err(exc.message if exc.message.startswith(exc.cmd) else f"{shown}: {exc.message}")
            return 2 if exc.code in _USAGE_CODES else 1
        except NotListening as exc:
            _err(str(exc))
            if located is not None and located.problem:
                _err(f"(the socket path comes from a config that does not parse: {located.problem})")
            return 1
        except ControlError as exc:
            _err(str(exc))
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # `actorsup logs -f | head`: the reader left
            sys.stderr.close()
            return 0

    return run


def _console() -> Any:
    from rich.console import Console  # rich is only paid for by human output

    # Piped output is not cut to 80 columns: a script grepping it wants whole rows.
    return Console(width=None if sys.stdout.isatty() else 200)


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


def _client(args: argparse.Namespace, path: Path) -> ControlClient:
    return ControlClient(path, timeout=args.timeout)


# --- commands ------------------------------------------------------------------
@_command
def cmd_status(args: argparse.Namespace, path: Path) -> int:
    if not args.watch:
        rows = _rows(args, path)
        _print_json(rows) if args.json else _console().print(status_table(rows))
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

        with Live(status_table(_rows(args, path)), console=_console(),
                  auto_refresh=False) as live:
            count = 1
            while args.count is None or count < args.count:
                time.sleep(args.interval)
                live.update(status_table(_rows(args, path)), refresh=True)
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
        for part in heartbeat_tables(report):
            console.print(part)
    return 0


def _lifecycle(cmd: str, done: str) -> Func:
    @_command
    def run(args: argparse.Namespace, path: Path) -> int:
        with _client(args, path) as client:
            for name in args.names:  # each: an actor, a group, `all` or a glob
                client.request(cmd, name=name)
                print(f"{done} {name}")
        return 0

    run.__name__ = f"cmd_{cmd}"
    return run


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
    render = (lambda raw: raw.decode("utf-8", "replace").rstrip("\n")) if args.json else log_line
    with _client(args, path) as client:
        if not args.follow:
            for event in client.request("logs", **request):
                print(json.dumps(event, ensure_ascii=False) if args.json else log_line(event))
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
        _console().print(generic_table(rows))
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
            _err(f"reload rejected: {exc.message}")
            return 1
    if args.json:
        _print_json(diff)
    else:
        parts = [f"{key} {', '.join(diff.get(key) or []) or '-'}" for key in ("added", "removed", "changed")]
        changed = any(diff.get(key) for key in ("added", "removed", "changed"))
        print("reloaded: " + ("; ".join(parts) if changed else "no changes"))
    return 0


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
    parent.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                       help="how long to wait for a reply (default: 30)")
    return parent


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_control_commands(subparsers: Any) -> None:
    """Add status, heartbeat, start, stop, restart, logs, events, cron, reload, shutdown."""
    common = [_common()]

    p = subparsers.add_parser("status", parents=common, help="show the tree of groups, actors and cron tasks")
    p.add_argument("names", metavar="NAME", nargs="*", help="only these (names or globs; a group with its members)")
    _json_flag(p)
    p.add_argument("--watch", action="store_true", help="redraw live until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="--watch refresh period (default: 1)")
    p.add_argument("--count", type=int, default=None, metavar="N",
                   help="--watch: stop after N refreshes")
    p.set_defaults(func=cmd_status)

    hb = subparsers.add_parser("heartbeat", help="heartbeat monitor commands")
    hb_sub = hb.add_subparsers(dest="heartbeat_command", required=True, metavar="COMMAND")
    p = hb_sub.add_parser("status", parents=common, help="overall health, counts and components")
    _json_flag(p)
    p.set_defaults(func=cmd_heartbeat_status)

    for name, func, text in (("start", cmd_start, "start stopped actors"),
                             ("stop", cmd_stop, "stop actors (they stay stopped)"),
                             ("restart", cmd_restart, "restart actors")):
        p = subparsers.add_parser(name, parents=common, help=text)
        p.add_argument("names", metavar="NAME", nargs="+",
                       help="an actor, a group, `all`, or a shell-style glob such as 'reader*'")
        p.set_defaults(func=func)

    p = subparsers.add_parser("scale", parents=common, help="change the number of instances of an actor")
    p.add_argument("name", metavar="NAME")
    p.add_argument("count", metavar="N", type=int)
    p.set_defaults(func=cmd_scale)

    p = subparsers.add_parser("logs", parents=common, help="buffered log lines, then -f follows")
    p.add_argument("name", metavar="NAME", nargs="?", default=None, help="only this actor")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", dest="n", type=int, default=None, metavar="N",
                   help="only the last N buffered lines")
    _json_flag(p)
    p.set_defaults(func=cmd_logs)

    p = subparsers.add_parser("events", parents=common, help="stream state changes as JSON lines")
    p.set_defaults(func=cmd_events)

    cron = subparsers.add_parser("cron", help="cron task commands")
    cron_sub = cron.add_subparsers(dest="cron_command", required=True, metavar="COMMAND")
    p = cron_sub.add_parser("list", parents=common, help="every cron task and its next run")
    _json_flag(p)
    p.set_defaults(func=cmd_cron_list)
    p = cron_sub.add_parser("trigger", parents=common, help="run a cron task now")
    p.add_argument("name", metavar="NAME")
    _json_flag(p)
    p.set_defaults(func=cmd_cron_trigger)

    p = subparsers.add_parser("reload", parents=common, help="re-read the config and apply it")
    _json_flag(p)
    p.set_defaults(func=cmd_reload)

    p = subparsers.add_parser("shutdown", parents=common, help="stop every actor and exit")
    p.set_defaults(func=cmd_shutdown)
