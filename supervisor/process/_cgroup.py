"""One cgroup v2 per child, under a cgroup of this supervisor, where one is writable.

A process cannot leave its cgroup (without write access to another one), so
``cgroup.kill`` (Linux 5.14) ends every descendant of a child, even one that
cleared its environment and so carries no tree cookie. It is used only when
the supervisor may create cgroups below its own (root, or a unit with
``Delegate=yes``); otherwise :func:`open_tree` returns None and the cookie
alone is used. No controller is enabled: the cgroups only group.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["CgroupTree", "open_tree"]


def _own_cgroup() -> Path | None:
    """Our cgroup v2 directory, from /proc/self/cgroup and /proc/self/mountinfo."""
    try:
        with open("/proc/self/cgroup") as f:
            path = next((line[3:].strip() for line in f if line.startswith("0::")), None)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    if path is None:
        return None
    for fields in mounts:
        sep = fields.index("-") if "-" in fields else -1
        if sep < 0 or fields[sep + 1] != "cgroup2":
            continue
        root, mount_point = fields[3], fields[4]
        if root != "/" and not path.startswith(root):
            continue
        relative = path[len(root):] if root != "/" else path
        return Path(mount_point) / relative.lstrip("/")
    return None


class CgroupTree:
    """``<our cgroup>/actorsup-PREFIX/cN``: one leaf per child."""

    def __init__(self, top: Path) -> None:
        self.top = top

    def leaf(self, serial: int) -> Path:
        return self.top / f"c{serial}"

    def add(self, serial: int, pid: int) -> bool:
        """Move ``pid`` (a child that runs no user code yet) into its own leaf."""
        leaf = self.leaf(serial)
        try:
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(pid))
            return True
        except OSError:
            return False

    def serial_of(self, pid: int) -> int | None:
        """The leaf ``pid`` is in, if it is one of ours."""
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                path = next((line[3:].strip() for line in f if line.startswith("0::")), "")
        except OSError:
            return None
        parent, _, name = path.rpartition("/")
        if not parent.endswith("/" + self.top.name) or not name.startswith("c") or not name[1:].isdigit():
            return None
        return int(name[1:])

    def pids(self, serial: int) -> set[int]:
        try:
            return set(map(int, (self.leaf(serial) / "cgroup.procs").read_text().split()))
        except (OSError, ValueError):
            return set()

    def kill(self, serial: int | None = None) -> None:
        """SIGKILL every process in one leaf (all leaves with None)."""
        target = self.top if serial is None else self.leaf(serial)
        with contextlib.suppress(OSError):
            (target / "cgroup.kill").write_text("1")

    def prune(self, serial: int | None = None) -> bool:
        """Remove the emptied leaf (every leaf and the top with None); True when gone."""
        if serial is not None:
            leaves = [self.leaf(serial)]
        else:
            leaves = [p for p in self.top.glob("c*") if p.name[1:].isdigit() and p.is_dir()] + [self.top]
        gone = True
        for path in leaves:
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # still populated: its processes are being killed
                gone = False
        return gone


def open_tree(prefix: str) -> CgroupTree | None:
    """Create this supervisor's cgroup, if cgroup v2 with ``cgroup.kill`` is writable here."""
    own = _own_cgroup()
    if own is None or not (own / "cgroup.procs").exists():
        return None
    top = own / f"actorsup-{prefix}"
    try:
        top.mkdir()
    except OSError:  # not delegated to us
        return None
    if not (top / "cgroup.kill").exists():  # kernel < 5.14
        os.rmdir(top)
        return None
    return CgroupTree(top)
