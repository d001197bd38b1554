"""Command actors' ``command``: argv parsing, shell-style splitting, program resolution."""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.command._argv import exec_failure_reason, parse_command, resolve_program
from supervisor.command._errors import CommandError, ProgramError


class TestParseCommand:
    @pytest.mark.parametrize(
        ("value", "argv"),
        [
            (["redis-server", "--port", "0"], ("redis-server", "--port", "0")),
            ("redis-server --port 0", ("redis-server", "--port", "0")),
            ("  sleep\t10  ", ("sleep", "10")),
            ("""echo 'a b' "c d" e\\ f""", ("echo", "a b", "c d", "e f")),
            ("""printf '' "" x""", ("printf", "", "", "x")),
            ('''echo "a \\"q\\" \\n"''', ("echo", 'a "q" \\n')),
            ("echo a#b # a comment", ("echo", "a#b")),
            ("echo a \\\n b", ("echo", "a", "b")),
            ("echo 'it''s'", ("echo", "its")),
            ("echo *.py ~", ("echo", "*.py", "~")),
            ("echo '$HOME | x'", ("echo", "$HOME | x")),
        ],
    )
    def test_valid(self, value: str | list[str], argv: tuple[str, ...]) -> None:
        """A list is taken as is; a string is split by POSIX shell quoting rules."""
        assert parse_command(value) == argv

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ([], "expected a non-empty argv list, got []"),
            ("", 'expected a program and its arguments, got ""'),
            ("   # only a comment", 'expected a program and its arguments, got "   # only a comment"'),
            ([""], 'expected a program name as the first word, got [""]'),
            (["ls", 3], 'expected a list of strings, got ["ls", 3]'),
            (42, "expected an argv list or a command string, got 42"),
            (["a\0b"], 'expected no NUL character in the command, got ["a\\u0000b"]'),
            ("echo 'open", """expected a closing ' quote, got "echo 'open\""""),
            ('echo "open', 'expected a closing " quote, got "echo \\"open"'),
            ("echo \\", 'expected a character after the final backslash, got "echo \\\\"'),
            (
                "redis-server > log",
                'expected one program and its arguments (> is shell syntax; no shell runs it: '
                'write ["sh", "-c", "..."] to use one), got "redis-server > log"',
            ),
            (
                "echo $HOME",
                """expected no $ expansion (no shell runs it: write ["sh", "-c", "..."] to use one, """
                """or quote it with '...'), got "echo $HOME\"""",
            ),
        ],
    )
    def test_invalid_message(self, value: object, message: str) -> None:
        """Each unusable command is one CommandError of the form ``expected ..., got VALUE``."""
        with pytest.raises(CommandError) as info:
            parse_command(value)  # type: ignore[arg-type]
        assert str(info.value) == message

    @pytest.mark.parametrize("text", ["a | b", "a; b", "a && b", "a & b", "(a)", "a < b", "a\nb", 'x "`id`"'])
    def test_shell_syntax_rejected(self, text: str) -> None:
        """Operators, a newline and command substitution need a shell, so they are errors."""
        with pytest.raises(CommandError, match="sh"):
            parse_command(text)

    def test_is_a_value_error_and_picklable(self) -> None:
        """CommandError is a ValueError that keeps problem and value through pickling."""
        err = pickle.loads(pickle.dumps(CommandError("expected x", [1])))
        assert isinstance(err, CommandError) and isinstance(err, ValueError)
        assert err.problem == "expected x" and err.value == [1]

    @settings(max_examples=150, deadline=None)
    @given(st.text(alphabet="ab '\"\\#\t\n", max_size=14))
    def test_split_matches_a_real_shell(self, text: str) -> None:
        """Where the split succeeds, dash splits the string into the same words."""
        try:
            argv = parse_command(["x", *_split_only(text)])
        except CommandError:
            return
        script = "set -- " + text + "\nfor a; do printf '%s\\0' \"$a\"; done\n"
        out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, check=True).stdout
        assert list(argv[1:]) == out.decode().split("\0")[:-1]

    @settings(max_examples=100, deadline=None)
    @given(st.text(alphabet="ab '\"\\", max_size=10))
    def test_unclosed_quotes_fail_in_a_real_shell_too(self, text: str) -> None:
        """A string rejected for its quoting is a syntax error for dash as well."""
        try:
            _split_only(text)
        except CommandError as exc:
            if "quote" not in exc.problem:
                return  # a final backslash: dash keeps it literally, we refuse the ambiguity
            result = subprocess.run(["/bin/sh", "-c", "set -- " + text], capture_output=True)
            assert result.returncode != 0


def _split_only(text: str) -> list[str]:
    from supervisor.command._argv import _split

    return _split(text)


class TestResolveProgram:
    def test_path_lookup_uses_the_childs_path(self, tmp_path: Path) -> None:
        """A bare name is found in the child's PATH, not the supervisor's."""
        tool = tmp_path / "bin" / "mytool"
        tool.parent.mkdir()
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
        assert resolve_program("mytool", env={"PATH": f"/nonexistent:{tool.parent}"}) == str(tool)
        with pytest.raises(ProgramError, match=r"^program not found: 'mytool' is not in PATH \(/usr/bin:/bin\)$"):
            resolve_program("mytool", env={"PATH": "/usr/bin:/bin"})

    def test_relative_path_entries_and_names_use_the_childs_cwd(self, tmp_path: Path) -> None:
        """``./x`` and a relative PATH entry are relative to the child's cwd."""
        (tmp_path / "tools").mkdir()
        for p in (tmp_path / "run.sh", tmp_path / "tools" / "t"):
            p.write_text("#!/bin/sh\n")
            p.chmod(0o700)
        assert resolve_program("./run.sh", cwd=tmp_path) == str(tmp_path / "run.sh")
        assert resolve_program("t", env={"PATH": "tools"}, cwd=tmp_path) == str(tmp_path / "tools" / "t")
        with pytest.raises(ProgramError, match=rf"^program not found: ./nope.sh \(in {tmp_path}\)$"):
            resolve_program("./nope.sh", cwd=tmp_path)

    def test_without_path_the_default_is_used(self) -> None:
        """No PATH in the child's env: os.defpath, as execvpe does."""
        assert resolve_program("sh", env={}) in ("/bin/sh", "/usr/bin/sh")

    def test_not_executable(self, tmp_path: Path) -> None:
        """A file without execute bits (for the child's uid) is refused with that reason."""
        script = tmp_path / "s"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o644)
        with pytest.raises(ProgramError) as info:
            resolve_program(str(script))
        assert info.value.reason == f"not executable (no execute permission): {script}"
        script.chmod(0o744)  # owner-only execute bit: root may, another uid may not
        assert resolve_program(str(script), uid=0) == str(script)
        with pytest.raises(ProgramError, match="no execute permission"):
            resolve_program(str(script), uid=65534, gids=[65534])

    def test_directory_is_not_a_program(self, tmp_path: Path) -> None:
        """A directory on PATH with the program's name is skipped, and reported if nothing else matches."""
        (tmp_path / "tool").mkdir()
        with pytest.raises(ProgramError, match=rf"^not executable \(a directory\): {tmp_path}/tool$"):
            resolve_program("tool", env={"PATH": str(tmp_path)})

    def test_later_path_entry_wins_over_a_non_executable_one(self, tmp_path: Path) -> None:
        """As execvp does, a non-executable match is skipped when a later entry is runnable."""
        a, b = tmp_path / "a", tmp_path / "b"
        a.mkdir()
        b.mkdir()
        (a / "t").write_text("")
        (b / "t").write_text("")
        (b / "t").chmod(0o755)
        assert resolve_program("t", env={"PATH": f"{a}:{b}"}) == str(b / "t")


class TestExecFailureReason:
    def test_reasons_from_a_real_spawn(self, tmp_path: Path) -> None:
        """Spawning a missing interpreter, a script without #! and a missing file gives distinct reasons."""
        cases = {
            "bad_interp": ("#!/nonexistent/i\n", "interpreter not found: /nonexistent/i (from the #! line of"),
            "no_shebang": ("\x7fELFjunk", "not executable (exec format error; a script needs a #! line)"),
        }
        for name, (body, reason) in cases.items():
            path = tmp_path / name
            path.write_text(body)
            path.chmod(0o755)
            with pytest.raises(OSError) as info:
                subprocess.Popen([str(path)])
            assert exec_failure_reason(info.value, str(path)).startswith(reason)
        gone = str(tmp_path / "gone")
        with pytest.raises(OSError) as info:
            subprocess.Popen([gone])
        assert exec_failure_reason(info.value, gone) == f"program not found: {gone}"

    def test_other_errnos(self) -> None:
        """Permission denied and unexpected errnos are worded with the path."""
        assert exec_failure_reason(PermissionError(errno.EACCES, "x"), "/p") == "not executable (permission denied): /p"
        assert exec_failure_reason(OSError(errno.E2BIG, "x"), "/p") == f"cannot run /p: {os.strerror(errno.E2BIG)}"
