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
    import os

    from ..exceptions import ConfigError

    try:
        os.getcwd()  # relative paths (and the demo's state) resolve against it
    except FileNotFoundError:
        print("actorsup: the current folder no longer exists (it was deleted): cd to one that does and run again",
              file=sys.stderr)
        return None
    try:
        if path is None:
            from ._demo import demo_config

            return demo_config()
        from ..config import load_config

        return load_config(path)
    except ConfigError as exc:
        print(f"actorsup: {exc}", file=sys.stderr)
        return None


def _warn_native() -> None:
    from ..logs._native import missing_warning

    if (line := missing_warning()) is not None:
        print(f"actorsup: {line}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    _warn_native()
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
    _warn_native()
    import anyio

    from ._malloc import keep_freed_memory
    from ._serve import serve
    from ._startup import explain

    keep_freed_memory()
    _signals.defer()  # from here the event loop takes the signals over
    try:
        return anyio.run(serve, config, args.socket, args.log_format, backend=config.supervisor.backend)
    except Exception as exc:
        explained = explain(exc, config)
        if explained is None:
            raise  # a bug: its traceback is the report
        code, lines = explained
        for line in lines:
            print(f"actorsup: {line}", file=sys.stderr)
        return code


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"actorsup {version('actorsup')}"
    except PackageNotFoundError:
        return "actorsup (not installed: running from a source tree)"


def build_parser() -> argparse.ArgumentParser:
    import argparse
    from pathlib import Path

    from ..control._commands import _command_parser, add_control_commands

    class Version(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
            print(_version())
            parser.exit()

    parser = argparse.ArgumentParser(
        prog="actorsup",
        description="Actor-style multiprocess supervisor: crash-isolated actors, heartbeats,\n"
                    "restarts, cron, structured logs.",
        epilog="examples:\n  actorsup run                 # the demo: restarts within seconds\n"
               "  actorsup run actorsup.toml\n  actorsup status\n"
               "`actorsup COMMAND --help` shows each command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = _command_parser(sub, "run", "run a supervisor in the foreground (no CONFIG: the embedded demo)", """
actorsup run                 # the demo: healthy, crashing and hanging actors
actorsup run actorsup.toml
actorsup run actorsup.toml --log-format console""",
                          description="Run a supervisor in the foreground until SIGINT/SIGTERM or "
                          "`actorsup shutdown` (exit 0). Logs go to stdout unless the config says otherwise.")
    run.add_argument("config", nargs="?", help="TOML config file (none: the embedded demo)")
    run.add_argument("--socket", type=Path, metavar="PATH",
                     help="control socket path (overrides [supervisor] control_socket)")
    run.add_argument("--log-format", choices=("auto", "json", "console"), default="auto",
                     help="stdout log lines: JSON, or coloured human lines; auto (the default): "
                     "console at a terminal, JSON otherwise")
    run.set_defaults(func=cmd_run)
    check = _command_parser(sub, "check", "validate a config; exit 0 if valid, 2 if not", """
actorsup check actorsup.toml""")
    check.add_argument("config", help="TOML config file")
    check.set_defaults(func=cmd_check)
    add_control_commands(sub)
    completion = _command_parser(sub, "completion", "print a shell completion script", """
actorsup completion bash > ~/.local/share/bash-completion/completions/actorsup
actorsup completion zsh > ~/.zfunc/_actorsup   # ~/.zfunc in $fpath
actorsup completion fish > ~/.config/fish/completions/actorsup.fish""",
                                 description="Print a completion script for bash, zsh or fish: commands, "
                                 "options, and actor names from the running supervisor. Or load it at "
                                 'shell start: eval "$(actorsup completion bash)" in ~/.bashrc.')
    completion.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    completion.set_defaults(func=cmd_completion)
    return parser


def cmd_completion(args: argparse.Namespace) -> int:
    from ._complete import SCRIPTS

    sys.stdout.write(SCRIPTS[args.shell])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    as_program = argv is None  # not called from Python: the process is ours to configure
    if as_program:
        from ._stdio import ensure_standard_fds

        ensure_standard_fds()
    argv = list(sys.argv[1:] if argv is None else argv)
    running = argv[:1] == ["run"]
    if argv[:1] == ["_complete"]:  # the shells' completion hook, not a user command
        from ._complete import complete_main

        return complete_main(argv[1:], build_parser())
    try:
        if running:
            _signals.stop_now()  # SIGINT/SIGTERM at any moment: a clean exit 0
        args = build_parser().parse_args(argv)
        if not running and as_program:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `actorsup logs | head` ends quietly
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
