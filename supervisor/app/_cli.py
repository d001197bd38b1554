"""The `actorsup` command line: `run` and `check` here; commands that talk to a
running supervisor come from :mod:`supervisor.control`."""

from __future__ import annotations

# Only what `main` needs before it takes the stop signals over: everything else
# is imported after that, and only by the command that uses it.
import signal
import sys
from typing import TYPE_CHECKING

from . import _signals

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from ..config import Config

__all__ = ["main"]

EXIT_CONFIG = 2


def _load(path: str | None) -> Config | None:
    """The config (the demo's without a path); None after printing a config error."""
    from ..exceptions import ConfigError

    try:
        if path is None:
            from ._demo import demo_config

            return demo_config()
        from ..config import load_config

        return load_config(path)
    except ConfigError as exc:
        print(f"actorsup: {exc}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    print(
        f"{args.config}: ok ({len(config.actors)} actors, {len(config.cron)} cron tasks, "
        f"{len(config.logs.sinks)} log sinks)"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    # Until the event loop listens, a stop signal exits 0 at once (see _signals).
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    import anyio

    from ._malloc import keep_freed_memory
    from ._serve import serve
    from ._startup import explain

    keep_freed_memory()
    _signals.defer()  # from here the event loop takes the signals over
    try:
        return anyio.run(serve, config, args.socket, backend=config.supervisor.backend)
    except Exception as exc:
        explained = explain(exc, config)
        if explained is None:
            raise  # a bug: its traceback is the report
        code, lines = explained
        for line in lines:
            print(f"actorsup: {line}", file=sys.stderr)
        return code


def build_parser() -> argparse.ArgumentParser:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="actorsup",
        description="Actor-style multiprocess supervisor: crash-isolated actors, heartbeats, "
                    "restarts, cron, structured logs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a supervisor in the foreground (no CONFIG: the embedded demo)")
    run.add_argument("config", nargs="?", help="TOML config file")
    run.add_argument("--socket", type=Path, help="control socket path (overrides the config)")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="validate a config; exit 0 if valid, 2 if not")
    check.add_argument("config", help="TOML config file")
    check.set_defaults(func=cmd_check)
    from ..control._commands import add_control_commands

    add_control_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    running = argv[:1] == ["run"]
    try:
        if running:
            _signals.stop_now()  # SIGINT/SIGTERM at any moment: a clean exit 0
        args = build_parser().parse_args(argv)
        if not running:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `actorsup logs | head` ends quietly
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
