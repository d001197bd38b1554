"""The `actorsup` command line: `run` and `check` here; commands that talk to a
running supervisor come from :mod:`supervisor.control`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from ..config import Config, load_config
from ..exceptions import ConfigError

__all__ = ["main"]

EXIT_CONFIG = 2


def _load(path: str | None) -> Config | None:
    """The config (the demo's without a path); None after printing a config error."""
    try:
        if path is None:
            from ._demo import demo_config

            return demo_config()
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
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    from ._malloc import keep_freed_memory
    from ._serve import serve

    keep_freed_memory()
    return anyio.run(serve, config, args.socket, backend=config.supervisor.backend)


def build_parser() -> argparse.ArgumentParser:
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `actorsup logs | head` ends quietly
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
