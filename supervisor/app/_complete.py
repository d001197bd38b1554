"""Shell completion: `actorsup completion bash|zsh|fish`, and the candidates behind it.

Each shell's script calls the hidden `actorsup _complete --cword N -- WORDS...`,
which walks the argparse tree: command names, option names, option values
(``--log-format``'s choices) and actor names, asked from the running
supervisor with a short timeout (its socket is found as every command finds
it, so ``-c CONFIG`` or ``--socket`` on the line being completed count).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["SCRIPTS", "candidates", "complete_main"]

_NAMED = {"start", "stop", "restart", "logs", "scale"}  # commands whose NAME is an actor
_ASK_TIMEOUT = 0.5  # a completion must never hang the shell

SCRIPTS = {
    "bash": """\
# actorsup completion for bash: eval "$(actorsup completion bash)", e.g. in ~/.bashrc
_actorsup() {
    local IFS=$'\\n'
    COMPREPLY=($(actorsup _complete --cword "$COMP_CWORD" -- "${COMP_WORDS[@]}" 2>/dev/null))
}
complete -o default -F _actorsup actorsup
""",
    "zsh": """\
#compdef actorsup
# actorsup completion for zsh: eval "$(actorsup completion zsh)", e.g. in ~/.zshrc
_actorsup() {
    local -a found
    found=("${(@f)$(actorsup _complete --cword $((CURRENT - 1)) -- "${words[@]}" 2>/dev/null)}")
    (( ${#found} )) && compadd -a found || _files
}
(( $+functions[compdef] )) || { autoload -Uz compinit && compinit; }
compdef _actorsup actorsup
""",
    "fish": """\
# actorsup completion for fish: actorsup completion fish > ~/.config/fish/completions/actorsup.fish
function __actorsup_complete
    set -l words (commandline -opc) (commandline -ct)
    actorsup _complete --cword (math (count $words) - 1) -- $words 2>/dev/null
end
complete -c actorsup -f -a '(__actorsup_complete)'
""",
}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _option(parser: argparse.ArgumentParser, word: str) -> argparse.Action | None:
    for action in parser._actions:
        if word in action.option_strings:
            return action
    return None


def _actor_names(words: list[str], cron: bool) -> list[str]:
    """Names from the running supervisor; none when it cannot be asked quickly."""
    from ..control._client import ControlClient
    from ..control._commands import _common, locate

    try:
        args, _ = _common().parse_known_args(words)  # --socket / -c on the line count
        with ControlClient(locate(args).path, timeout=_ASK_TIMEOUT) as client:
            rows = client.request("status")
    except (Exception, SystemExit):  # no supervisor, a bad line: simply no names
        return []
    return [str(r["name"]) for r in rows if isinstance(r, dict) and (not cron or r.get("kind") == "cron")]


def candidates(parser: argparse.ArgumentParser, words: Sequence[str], cword: int) -> list[str]:
    """What may stand at ``words[cword]`` (``words[0]`` is the program), filtered by its prefix."""
    words = list(words)
    prefix = words[cword] if cword < len(words) else ""
    before = words[1:cword]
    path: list[str] = []
    current = parser
    for word in before:
        sub = _subcommands(current)
        if word in sub:
            current = sub[word]
            path.append(word)
    if before:
        wants = _option(current, before[-1])
        if wants is not None and wants.nargs != 0:
            choices = wants.choices or []
            return [str(c) for c in choices if str(c).startswith(prefix)]  # none: the shell's files
    if prefix.startswith("-"):
        return sorted(o for a in current._actions for o in a.option_strings if o.startswith(prefix))
    sub = _subcommands(current)
    if sub:  # a command (or a group's subcommand) comes next
        return [name for name in sub if name.startswith(prefix)]
    if path and (path[-1] in _NAMED or path == ["cron", "trigger"]):
        named = _actor_names([w for w in before if w not in path], cron=path == ["cron", "trigger"])
        return [n for n in named if n.startswith(prefix)]
    return []


def complete_main(argv: Sequence[str], parser: Any) -> int:
    """`actorsup _complete --cword N -- WORDS...`: one candidate per line."""
    args = list(argv)
    try:
        cword = int(args[args.index("--cword") + 1])
        words = args[args.index("--") + 1:]
    except (ValueError, IndexError):
        return 2
    for found in candidates(parser, words, cword):
        print(found)
    return 0
