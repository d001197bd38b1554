"""A command actor's ``command``: an argv list, or a string split as a POSIX shell would.

No shell ever runs the string. So shell syntax that would silently mean
something else without one (``|``, ``;``, ``>``, ``&&``, ``$VAR``, backticks)
is an error that says to write ``["sh", "-c", "..."]``, not a literal argument.
Globs and ``~`` are not expanded (a shell would; here they stay as written).

:func:`resolve_program` finds the program as ``execvpe`` would in the child:
a name with a ``/`` is relative to the child's ``cwd``, any other name is
looked up in the child's ``PATH``. It fails with a reason meant for
``actor.exited`` (not found, not executable, a directory), and
:func:`exec_failure_reason` words an ``OSError`` of the spawn itself the same way.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Mapping

from ._errors import CommandError, ProgramError

__all__ = ["exec_failure_reason", "parse_command", "resolve_program"]

_OPERATORS = frozenset("|&;<>()\n")
_DQ_ESCAPES = frozenset('$`"\\\n')  # what a backslash escapes inside "..."
_SH_HINT = 'no shell runs it: write ["sh", "-c", "..."] to use one'


def parse_command(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The argv of ``command``; :class:`CommandError` if it cannot be one."""
    if isinstance(value, str):
        argv = tuple(_split(value))
        if not argv:
            raise CommandError("expected a program and its arguments", value)
    elif isinstance(value, list | tuple):
        if not value:
            raise CommandError("expected a non-empty argv list", list(value))
        if not all(isinstance(arg, str) for arg in value):
            raise CommandError("expected a list of strings", list(value))
        argv = tuple(value)
    else:
        raise CommandError("expected an argv list or a command string", value)
    if not argv[0]:
        raise CommandError("expected a program name as the first word", value)
    if any("\0" in arg for arg in argv):
        raise CommandError("expected no NUL character in the command", value)
    return argv


def _split(text: str) -> list[str]:
    """Split ``text`` into words by POSIX shell quoting rules, rejecting what needs a shell."""
    words: list[str] = []
    word: list[str] = []
    in_word = False  # a quoted empty string ('' or "") is still a word
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise CommandError("expected a closing ' quote", text)
            word.append(text[i + 1 : end])
            in_word, i = True, end + 1
            continue
        if c == '"':
            i = _double_quoted(text, i + 1, word)
            in_word = True
            continue
        if c == "\\":
            if i + 1 >= n:
                raise CommandError("expected a character after the final backslash", text)
            if text[i + 1] != "\n":  # backslash-newline joins lines
                word.append(text[i + 1])
                in_word = True
            i += 2
            continue
        if c in " \t":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        elif c == "#" and not in_word:
            end = text.find("\n", i)
            if end < 0:
                break
            i = end  # the newline after a comment still separates commands
            continue
        elif c in _OPERATORS:
            shown = "a newline" if c == "\n" else c
            raise CommandError(f"expected one program and its arguments ({shown} is shell syntax; {_SH_HINT})", text)
        elif c in "$`":
            raise CommandError(f"expected no {c} expansion ({_SH_HINT}, or quote it with '...')", text)
        else:
            word.append(c)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(word))
    return words


def _double_quoted(text: str, i: int, word: list[str]) -> int:
    """Append the body of a "..." starting at ``i`` to ``word``; the index after its closing quote."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return i + 1
        if c == "\\" and i + 1 < n and text[i + 1] in _DQ_ESCAPES:
            if text[i + 1] != "\n":
                word.append(text[i + 1])
            i += 2
            continue
        if c in "$`":
            raise CommandError(f"expected no {c} expansion ({_SH_HINT}, or quote it with '...')", text)
        word.append(c)
        i += 1
    raise CommandError('expected a closing " quote', text)


def resolve_program(
    program: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    uid: int | None = None,
    gids: Collection[int] | None = None,
) -> str:
    """The path the child would exec for ``program``, or :class:`ProgramError`.

    ``env`` and ``cwd`` are the child's (``PATH`` from ``env``, else
    ``os.defpath`` as ``execvpe`` uses); ``uid``/``gids`` the identity it runs
    as (default: this process's), for the execute-permission check.
    """
    base = os.fspath(cwd) if cwd is not None else os.getcwd()
    uid = os.geteuid() if uid is None else uid
    gids = {os.getegid(), *os.getgroups()} if gids is None else set(gids)
    if "/" in program:
        path = os.path.join(base, program)
        problem = _unrunnable(path, uid, gids)
        if problem is not None:
            raise ProgramError(program, f"{problem}: {program}" + ("" if os.path.isabs(program) else f" (in {base})"))
        return os.path.normpath(path)
    search = (env.get("PATH") if env is not None else None) or os.defpath
    refused: str | None = None
    for entry in search.split(os.pathsep):
        path = os.path.join(base, entry or ".", program)
        problem = _unrunnable(path, uid, gids)
        if problem is None:
            return os.path.normpath(path)
        if problem != "program not found" and refused is None:
            refused = f"{problem}: {os.path.normpath(path)}"  # execvp reports it if nothing better turns up
    raise ProgramError(program, refused or f"program not found: {program!r} is not in PATH ({search})")


def _unrunnable(path: str, uid: int, gids: set[int]) -> str | None:
    """Why ``path`` cannot be exec'd by ``uid``/``gids``; None if it can."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "program not found"
    except NotADirectoryError:
        return "program not found"
    except PermissionError:
        return "not executable (a directory on its path is not searchable)"
    except OSError as exc:
        return f"cannot run ({os.strerror(exc.errno or 0)})"
    if stat.S_ISDIR(st.st_mode):
        return "not executable (a directory)"
    if not stat.S_ISREG(st.st_mode):
        return "not executable (not a regular file)"
    mode = st.st_mode
    if uid == 0:
        allowed = bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    elif st.st_uid == uid:
        allowed = bool(mode & stat.S_IXUSR)
    elif st.st_gid in gids:
        allowed = bool(mode & stat.S_IXGRP)
    else:
        allowed = bool(mode & stat.S_IXOTH)
    return None if allowed else "not executable (no execute permission)"


def exec_failure_reason(exc: OSError, path: str) -> str:
    """The ``actor.exited`` reason for an ``OSError`` raised by spawning ``path``."""
    code = exc.errno
    if code == errno.ENOENT:
        interpreter = _shebang(path)
        if interpreter is not None:
            return f"interpreter not found: {interpreter} (from the #! line of {path})"
        return f"program not found: {path}"
    if code == errno.EACCES:
        return f"not executable (permission denied): {path}"
    if code == errno.ENOEXEC:
        return f"not executable (exec format error; a script needs a #! line): {path}"
    if code == errno.ETXTBSY:
        return f"not executable (the file is open for writing): {path}"
    return f"cannot run {path}: {os.strerror(code) if code else exc}"


def _shebang(path: str) -> str | None:
    """The interpreter named on ``path``'s ``#!`` line, if it has one."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return words[0].decode("utf-8", "backslashreplace") if words else None
