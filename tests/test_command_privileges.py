"""``user``/``group`` of command actors: resolution, the root rule, and a real privilege drop."""

from __future__ import annotations

import os
import subprocess

import pytest

from supervisor.command._argv import resolve_program
from supervisor.command._errors import ProgramError
from supervisor.command._privileges import Credentials, PrivilegeError, resolve_credentials, resolve_user

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


class TestResolve:
    def test_nothing_set(self) -> None:
        """Neither user nor group: no credentials, the program runs as the supervisor."""
        assert resolve_credentials(None, None) is None

    def test_user_by_name_takes_its_primary_group(self) -> None:
        """user = "nobody": its uid, its passwd group, its home (as root)."""
        creds = resolve_credentials("nobody", euid=0, egid=0)
        assert creds == Credentials(65534, 65534, (), "nobody", "/nonexistent")
        assert creds.env() == {"USER": "nobody", "LOGNAME": "nobody", "HOME": "/nonexistent"}

    def test_group_overrides_and_user_by_uid(self) -> None:
        """group = "daemon" overrides the primary group; a uid string or int finds the same user."""
        creds = resolve_credentials("65534", "daemon", euid=0, egid=0)
        assert creds is not None and (creds.uid, creds.gid, creds.user) == (65534, 1, "nobody")
        assert resolve_credentials(65534, 1, euid=0, egid=0) == creds

    def test_supplementary_groups_are_the_users(self) -> None:
        """The supplementary groups are the user's memberships, without the primary one."""
        creds = resolve_credentials("root", euid=0, egid=0)
        assert creds is not None and creds.gid == 0 and 0 not in creds.groups
        assert set(creds.all_gids) == set(os.getgrouplist("root", 0))

    def test_uid_without_a_passwd_entry(self) -> None:
        """A bare uid with no passwd entry is accepted with a group, refused without one."""
        creds = resolve_credentials(54321, "nogroup", euid=0, egid=0)
        assert creds == Credentials(54321, 65534, (), None, None)
        with pytest.raises(PrivilegeError) as info:
            resolve_credentials(54321, euid=0, egid=0)
        assert (info.value.key, str(info.value)) == ("user", "a uid without a passwd entry needs group set as well, "
                                                              "got 54321")

    def test_group_alone(self) -> None:
        """group alone (as root): the supervisor's uid, that group, no supplementary groups."""
        assert resolve_credentials(None, "nogroup", euid=0, egid=0) == Credentials(0, 65534, ())

    @pytest.mark.parametrize(
        ("user", "group", "key", "message"),
        [
            ("no-such-user-x", None, "user",
             'user not found (check /etc/passwd or `getent passwd`), got "no-such-user-x"'),
            (None, "no-such-group-x", "group",
             'group not found (check /etc/group or `getent group`), got "no-such-group-x"'),
            (True, None, "user", "expected a user name or a uid, got true"),
            (-1, None, "user", "expected a user name or a uid >= 0, got -1"),
            ("nobody", 1.5, "group", "expected a group name or a gid, got 1.5"),
            ("nobody", -3, "group", "expected a group name or a gid >= 0, got -3"),
        ],
    )
    def test_bad_values(self, user: object, group: object, key: str, message: str) -> None:
        """Each unusable user or group is one PrivilegeError naming the key, in the config's style."""
        with pytest.raises(PrivilegeError) as info:
            resolve_credentials(user, group, euid=0, egid=0)  # type: ignore[arg-type]
        assert (info.value.key, str(info.value)) == (key, message)


class TestUserAndGroup:
    def test_name_and_group(self) -> None:
        """user = "nobody:daemon": nobody's uid and home, gid daemon, and no supplementary groups."""
        assert resolve_user("nobody:daemon", euid=0, egid=0) == Credentials(65534, 1, (), "nobody", "/nonexistent")

    def test_numeric_ids(self) -> None:
        """Each part may be a numeric id (as Docker's --user and chown); a gid needs no /etc/group entry."""
        assert resolve_user("65534:1", euid=0, egid=0) == resolve_user("nobody:daemon", euid=0, egid=0)
        assert resolve_user("54321:54321", euid=0, egid=0) == Credentials(54321, 54321, (), None, None)

    def test_a_named_group_is_the_only_group(self) -> None:
        """"root:daemon" drops root's memberships; "root" alone keeps them (its primary and supplementary groups)."""
        named = resolve_user("root:daemon", euid=0, egid=0)
        assert named is not None and (named.gid, named.groups) == (1, ())
        assert resolve_user("root", euid=0, egid=0) == resolve_credentials("root", euid=0, egid=0)
        assert resolve_user(None) is None

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("no-such-user-x:daemon", 'user not found (check /etc/passwd or `getent passwd`), got "no-such-user-x"'),
            ("nobody:no-such-group-x", 'group not found (check /etc/group or `getent group`), got "no-such-group-x"'),
            ("nobody:", 'expected "USER" or "USER:GROUP" (a name or a numeric id each), got "nobody:"'),
            (":daemon", 'expected "USER" or "USER:GROUP" (a name or a numeric id each), got ":daemon"'),
            ("a:b:c", 'expected "USER" or "USER:GROUP" (a name or a numeric id each), got "a:b:c"'),
            (7.5, "expected a user name or a uid, got 7.5"),
        ],
    )
    def test_bad_values(self, value: object, message: str) -> None:
        """Each unusable "USER:GROUP" is one PrivilegeError keyed user (the config key), naming the bad part."""
        with pytest.raises(PrivilegeError) as info:
            resolve_user(value, euid=0, egid=0)
        assert (info.value.key, str(info.value)) == ("user", message)

    def test_another_group_needs_root(self) -> None:
        """As uid 65534, "nobody:daemon" is refused (keyed user), "nobody:nogroup" changes nothing."""
        with pytest.raises(PrivilegeError) as info:
            resolve_user("nobody:daemon", euid=65534, egid=65534)
        assert (info.value.key, str(info.value)) == (
            "user", 'needs the supervisor to run as root (it runs as uid 65534), got "daemon"')
        creds = resolve_user("nobody:nogroup", euid=65534, egid=65534)
        assert creds is not None and not creds.switch


class TestNotRoot:
    def test_another_user_needs_root(self) -> None:
        """A supervisor running as uid 1000 cannot run a program as nobody: a clear error."""
        with pytest.raises(PrivilegeError) as info:
            resolve_credentials("nobody", euid=1000, egid=1000)
        assert (info.value.key, str(info.value)) == (
            "user", 'needs the supervisor to run as root (it runs as uid 1000), got "nobody"')

    def test_another_group_needs_root(self) -> None:
        """Nor, as uid 65534, put it in another group."""
        with pytest.raises(PrivilegeError, match=r"^needs the supervisor to run as root \(it runs as uid 65534\), "
                                                  r'got "daemon"$') as info:
            resolve_credentials("nobody", "daemon", euid=65534, egid=65534)
        assert info.value.key == "group"

    def test_naming_itself_changes_nothing(self) -> None:
        """The supervisor's own user (and group) is accepted, and gives Popen nothing to switch."""
        creds = resolve_credentials("nobody", euid=65534, egid=65534)
        assert creds is not None and creds.uid == 65534 and not creds.switch
        assert creds.popen_kwargs() == {}


@needs_root
class TestRealDrop:
    def test_program_runs_as_nobody(self) -> None:
        """Popen with popen_kwargs() runs `id` as nobody:nogroup with only the user's groups."""
        creds = resolve_credentials("nobody")
        assert creds is not None
        result = subprocess.run(["sh", "-c", "id -u; id -g; id -G"], capture_output=True, check=True,
                                **creds.popen_kwargs())
        assert result.stdout.decode().splitlines() == ["65534", "65534", "65534"]

    def test_execute_permission_is_checked_for_the_dropped_user(self, tmp_path: os.PathLike[str]) -> None:
        """An owner-only executable is runnable by root but reported not executable for nobody."""
        script = os.path.join(tmp_path, "s")
        with open(script, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(script, 0o700)
        os.chmod(tmp_path, 0o755)
        creds = resolve_credentials("nobody")
        assert creds is not None
        assert resolve_program(script) == script
        with pytest.raises(ProgramError, match="no execute permission"):
            resolve_program(script, uid=creds.uid, gids=creds.all_gids)
