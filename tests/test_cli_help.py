"""The CLI explains itself: --version, and --help with every argument described and examples."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from supervisor.app._cli import build_parser


def commands(parser: argparse.ArgumentParser, path: str = "actorsup") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command parser, depth first, with its command line."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub
                yield from commands(sub, f"{path} {name}")


class TestHelp:
    def test_every_command_has_a_description_and_examples(self) -> None:
        """Each command's --help has a description and an examples section of real command lines."""
        for line, parser in commands(build_parser()):
            assert parser.description, line
            assert parser.epilog and parser.epilog.startswith("examples:\n  actorsup "), line

    def test_every_argument_is_described(self) -> None:
        """No option or positional argument of any command goes without a help text."""
        for line, parser in commands(build_parser()):
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    continue
                assert action.help and action.help != argparse.SUPPRESS, f"{line}: {action.dest}"

    def test_examples_parse(self) -> None:
        """Every example in the help is a command line the parser accepts."""
        parser = build_parser()
        for _line, sub in commands(parser):
            assert sub.epilog is not None
            for example in sub.epilog.splitlines()[1:]:
                argv = example.split("#")[0].split("|")[0].split(">")[0].split()[1:]
                parser.parse_args(argv)  # a SystemExit here fails the test

    def test_version(self) -> None:
        """--version prints the installed distribution's version and exits 0."""
        result = subprocess.run([sys.executable, "-m", "supervisor", "--version"], capture_output=True, text=True,
                                timeout=30, env=dict(os.environ, PYTHONPATH=os.getcwd()))
        assert (result.returncode, result.stdout) == (0, f"actorsup {version('actorsup')}\n")

    @pytest.mark.parametrize("argv", [[*line.split()[1:], "--help"] for line, _ in commands(build_parser())]
                             + [["--help"]])
    def test_help_fits_80_columns(self, argv: list[str]) -> None:
        """Every command's --help, examples included, fits an 80-column terminal."""
        result = subprocess.run([sys.executable, "-m", "supervisor", *argv], capture_output=True, text=True,
                                timeout=30, env=dict(os.environ, PYTHONPATH=os.getcwd(), COLUMNS="80"))
        assert result.returncode == 0
        long = [line for line in result.stdout.splitlines() if len(line) > 80]
        assert long == []
