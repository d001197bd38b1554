"""``user`` of a command actor (``"NAME"`` or ``"NAME:GROUP"``): who the program runs as.

Resolved once, when the config is loaded (``pwd``/``grp``), into
:class:`Credentials`: the uid, the primary gid and the supplementary groups.
``user = "NAME"`` takes the user's own group and memberships (as
``initgroups`` sets them); ``"NAME:GROUP"`` (each part a name or a numeric id,
as in Docker's ``--user`` and ``chown``) runs in that group alone, as Docker
does: naming a group confines the program to it. The table's ``group`` key is
the supervision group, so the Unix group rides on ``user``. Changing them needs
root; a supervisor that is not root may only name itself, and anything else is
an error then, not a surprise at spawn time.
:meth:`Credentials.popen_kwargs` is what ``subprocess.Popen`` takes: it
switches groups first and the uid last, in the child, before the exec.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import Any

from ._errors import SpecError

__all__ = ["Credentials", "PrivilegeError", "resolve_credentials", "resolve_user"]


class PrivilegeError(SpecError):
    """``user`` or ``group`` cannot be used (``key`` says which)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, set with setgroups()
    user: str | None = None  # the passwd name, when there is one
    home: str | None = None
    switch: bool = True  # False: they are the supervisor's own, nothing to change

    def popen_kwargs(self) -> dict[str, Any]:
        """``user``, ``group`` and ``extra_groups`` for ``subprocess.Popen`` (none if nothing changes)."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def env(self) -> dict[str, str]:
        """``USER``, ``LOGNAME`` and ``HOME`` of the user, as systemd sets them for ``User=``."""
        env: dict[str, str] = {}
        if self.user is not None:
            env["USER"] = env["LOGNAME"] = self.user
        if self.home:
            env["HOME"] = self.home
        return env

    @property
    def all_gids(self) -> tuple[int, ...]:
        """The primary and supplementary groups: what an access check sees."""
        return (self.gid, *self.groups)


def resolve_user(value: object, *, euid: int | None = None, egid: int | None = None) -> Credentials | None:
    """``user = "NAME"`` or ``"NAME:GROUP"`` (None: not set), or :class:`PrivilegeError` keyed ``user``."""
    if not isinstance(value, str) or ":" not in value:
        return resolve_credentials(value, euid=euid, egid=egid)  # type: ignore[arg-type]  # it checks the type
    name, _, group = value.partition(":")
    if not name or not group or ":" in group:
        raise PrivilegeError('expected "USER" or "USER:GROUP" (a name or a numeric id each)', value, "user")
    try:
        return resolve_credentials(name, group, euid=euid, egid=egid)
    except PrivilegeError as exc:  # the part to blame is the value; the key is still `user`
        raise PrivilegeError(exc.problem, exc.value, "user") from None


def resolve_credentials(
    user: str | int | None, group: str | int | None = None, *, euid: int | None = None, egid: int | None = None
) -> Credentials | None:
    """The credentials for ``user``/``group`` (None if neither is set), or :class:`PrivilegeError`.

    An explicit ``group`` is the only group (no supplementary ones).

    ``euid``/``egid`` are the supervisor's (default: this process's): when it
    is not root, only its own user and group are accepted.
    """
    if user is None and group is None:
        return None
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    entry = _passwd(user) if user is not None else None
    gid = _group(group) if group is not None else None
    if entry is not None:
        uid, name, home = entry.pw_uid, entry.pw_name, entry.pw_dir
        if gid is None:  # the user's own group and memberships, as initgroups() sets them
            gid = entry.pw_gid
            groups = tuple(g for g in dict.fromkeys(os.getgrouplist(name, gid)) if g != gid)
        else:
            groups = ()
    elif user is not None:  # a numeric uid with no passwd entry
        if gid is None:
            raise PrivilegeError("a uid without a passwd entry needs group set as well", user, "user")
        uid, name, home, groups = int(user), None, None, ()
    else:  # group alone: the supervisor's user, in that group only
        assert gid is not None
        uid, name, home, groups = euid, None, None, ()
    if euid == 0:
        return Credentials(uid, gid, groups, name, home)
    needs_root = f"needs the supervisor to run as root (it runs as uid {euid})"
    if uid != euid:
        raise PrivilegeError(needs_root, user, "user")
    if gid != egid:
        raise PrivilegeError(needs_root, group if group is not None else user, "group" if group is not None else "user")
    return Credentials(uid, gid, tuple(g for g in os.getgroups() if g != gid), name, home, switch=False)


def _passwd(user: str | int) -> pwd.struct_passwd | None:
    if isinstance(user, bool) or not isinstance(user, str | int):
        raise PrivilegeError("expected a user name or a uid", user, "user")
    try:
        if isinstance(user, int) or _digits(user):
            if int(user) < 0:
                raise PrivilegeError("expected a user name or a uid >= 0", user, "user")
            return pwd.getpwuid(int(user))
        return pwd.getpwnam(user)
    except KeyError:
        if isinstance(user, int) or _digits(user):
            return None
        raise PrivilegeError("user not found (check /etc/passwd or `getent passwd`)", user, "user") from None


def _group(group: str | int) -> int:
    if isinstance(group, bool) or not isinstance(group, str | int):
        raise PrivilegeError("expected a group name or a gid", group, "group")
    if isinstance(group, int) or _digits(group):
        if int(group) < 0:
            raise PrivilegeError("expected a group name or a gid >= 0", group, "group")
        return int(group)  # a gid needs no entry in /etc/group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise PrivilegeError("group not found (check /etc/group or `getent group`)", group, "group") from None


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()
