"""Build isolation: who a build runs as, and making sure nothing it started outlives its step.

A build (install scripts, the build command, everything they spawn) is untrusted code. When the
runtime runs as root (FC's custom runtime does, for functions created since December 2021), each
concurrent build gets a slot with its own unprivileged uid: it cannot read the runtime's memory
or environment, other builds' workspaces, or fcbuild's caches between builds; and every process
it started is found by that uid and killed when the step ends, however it detached.

Without root, builds share the runtime's user. The runtime is still non-dumpable (another process
of the same uid cannot read its /proc environ or memory) and a child subreaper (orphans come back
to it), and leftovers are found among its descendants; the start-up log says so.

Stdlib only; `harden_process` runs before the port opens.
"""

from __future__ import annotations

import errno
import os
import pwd
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from errors import Busy, NotAvailable

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
KILL_ROUNDS = 50
# World-writable places where a build could leave files for a later build of the same uid.
SHARED_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def harden_process() -> list[str]:
    """Make this process non-dumpable (its /proc environ and memory readable by root only) and a
    child subreaper (orphaned descendants are re-parented to it, not to init). Returns what failed."""
    problems = []
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for option, value, what in (
            (PR_SET_DUMPABLE, 0, "non-dumpable"),
            (PR_SET_CHILD_SUBREAPER, 1, "child subreaper"),
        ):
            if libc.prctl(option, value, 0, 0, 0) != 0:
                problems.append(f"prctl {what}: {os.strerror(ctypes.get_errno())}")
    except (OSError, AttributeError, ImportError) as exc:
        problems.append(f"prctl unavailable: {exc}")
    return problems


def ensure_root(root: str) -> None:
    """The workspace root: builds may pass through it (0711) but list nothing; `cache/` is the
    runtime's alone (0700); `tools/` (package-manager releases) is readable, not writable."""
    for sub, mode in (("", 0o711), ("ws", 0o711), ("cache", 0o700), ("tools", 0o755)):
        path = os.path.join(root, sub) if sub else root
        os.makedirs(path, exist_ok=True)
        if os.stat(path).st_uid == os.geteuid():
            os.chmod(path, mode)
    if is_root():
        closed = closed_ancestor(root)
        if closed:
            raise NotAvailable(
                f"FCBUILD_WORKSPACE_ROOT {root} cannot be reached by the build users: {closed} is closed to "
                "others (mode o-x); choose a folder under /tmp"
            )


def claim_uids(first: int, last: int, *, explicit: bool) -> tuple[int, int, list[socket.socket]]:
    """Take every uid of [first, last] for this process: builds are ended by killing every process of
    their uid, so two runtimes on one host that share a uid kill each other's builds. Each uid is
    held as an abstract unix socket name (`@fcbuild-build-uid-<uid>`: one per network namespace,
    gone with the process, no file left anywhere). A range given explicitly (`explicit`) that another
    runtime holds is refused (ValueError); the default range moves to the next free block of its size.
    Returns the range taken and the sockets that hold it (close-on-exec: no build inherits them)."""
    size = last - first + 1
    for _ in range(64):
        held: list[socket.socket] = []
        taken = None
        for uid in range(first, last + 1):
            name = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                name.bind(f"\0fcbuild-build-uid-{uid}")
            except OSError as exc:
                name.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                taken = uid
                break
            held.append(name)
        if taken is None:
            return first, last, held
        for name in held:
            name.close()
        if explicit:
            raise ValueError(
                f"FCBUILD_BUILD_UIDS {first}-{last}: uid {taken} is used by another fcbuild runtime on this host, "
                "which would kill this one's builds (and this one its): give each runtime a range of its own"
            )
        first, last = last + 1, last + size
    raise ValueError(f"no free range of {size} build uids after 64 tries: name one in FCBUILD_BUILD_UIDS")


def is_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class Slot:
    """One concurrent build's identity. `uid` None: the runtime's own user."""

    index: int
    uid: int | None = None
    gid: int | None = None

    @property
    def isolated(self) -> bool:
        return self.uid is not None

    def describe(self) -> str:
        return f"slot {self.index} (uid {self.uid})" if self.isolated else f"slot {self.index} (the runtime's user)"


class Slots:
    """At most `count` builds at once; each holds a slot until it ends. Lives on the Instance."""

    def __init__(self, count: int, uids: Sequence[int] | None) -> None:
        if uids is not None and len(uids) < count:
            raise ValueError(f"{count} build slots need {count} uids, the range has {len(uids)}")
        self._free = [Slot(i, uids[i], uids[i]) if uids is not None else Slot(i) for i in range(count)]
        self._cond = threading.Condition()
        self.count = count

    def acquire(self, timeout: float, prefer_uid: Callable[[], int | None] | None = None) -> Slot:
        """A free slot (the one whose uid `prefer_uid()` names, when free), waiting at most `timeout` s."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._free:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Busy(
                        f"all {self.count} build slot(s) of this instance stayed busy for {timeout:.0f}s "
                        "(FCBUILD_MAX_BUILDS, FCBUILD_QUEUE_WAIT_S); retry, or give the function more instances"
                    )
                self._cond.wait(left)
            wanted = prefer_uid() if prefer_uid else None
            slot = next((s for s in self._free if wanted is not None and s.uid == wanted), self._free[0])
            self._free.remove(slot)
            return slot

    def release(self, slot: Slot) -> None:
        with self._cond:
            self._free.append(slot)
            self._free.sort(key=lambda s: s.index)
            self._cond.notify()


def ensure_accounts(uids: Iterable[int], log: object = None) -> list[str]:
    """Name each build uid in /etc/passwd and /etc/group (as `fcbuild<uid>`), so that tools calling
    getpwuid (Node's os.userInfo(), whoami) work. Returns what could not be done; never fatal."""
    problems = []
    missing = []
    for uid in uids:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            missing.append(uid)
    if not missing:
        return problems
    try:
        with open("/etc/group", "a", encoding="utf-8") as group, open("/etc/passwd", "a", encoding="utf-8") as passwd:
            for uid in missing:
                group.write(f"fcbuild{uid}:x:{uid}:\n")
                passwd.write(f"fcbuild{uid}:x:{uid}:{uid}:fcbuild build user:/nonexistent:/usr/sbin/nologin\n")
    except OSError as exc:
        problems.append(f"could not name the build users in /etc/passwd ({exc}); tools that look up the user fail")
    return problems


# --- processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    state: str
    uids: tuple[int, ...]  # real, effective, saved, filesystem


def processes() -> list[ProcInfo]:
    """Every process visible in /proc (threads excluded)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
            with open(f"/proc/{name}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue
        rest = raw[raw.rfind(b")") + 2 :].split()  # the command may hold spaces and parentheses
        uids: tuple[int, ...] = ()
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                uids = tuple(int(x) for x in line.split()[1:])
                break
        found.append(ProcInfo(int(name), int(rest[1]), int(rest[2]), rest[0].decode(), uids))
    return found


def _kill_as(uid: int, gid: int) -> None:
    """kill(-1, SIGKILL) from a child that has become `uid`: the kernel signals every process of
    that uid in one pass, so a fork loop cannot outrun it the way a /proc scan can be outrun."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def end_uid(uid: int, gid: int) -> int:
    """Kill every process of `uid` until none is left. Returns how many were alive at first."""
    first = None
    for _ in range(KILL_ROUNDS):
        alive = [p for p in processes() if uid in p.uids[:3] and p.state != "Z"]
        if first is None:
            first = len(alive)
        if not alive:
            break
        _kill_as(uid, gid)
        time.sleep(0.005)
    return first or 0


def end_descendants(protected_pgids: Iterable[int]) -> int:
    """Without root: kill every descendant of this process outside the protected process groups
    (other builds' running steps). Orphans come back to us as the child subreaper."""
    me = os.getpid()
    protected = set(protected_pgids)
    first = None
    for _ in range(KILL_ROUNDS):
        table = processes()
        children: dict[int, list[ProcInfo]] = {}
        for p in table:
            children.setdefault(p.ppid, []).append(p)
        victims, todo = [], list(children.get(me, []))
        while todo:
            p = todo.pop()
            if p.pgid in protected:
                continue
            if p.state != "Z":
                victims.append(p.pid)
            todo.extend(children.get(p.pid, []))
        if first is None:
            first = len(victims)
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)
    return first or 0


def reap_orphans(tracked: Iterable[int]) -> int:
    """Collect the exit status of dead orphans re-parented to us (we are their subreaper), except
    children that a `subprocess.Popen` waits for itself."""
    me, keep, reaped = os.getpid(), set(tracked), 0
    for p in processes():
        if p.ppid == me and p.state == "Z" and p.pid not in keep:
            try:
                if os.waitpid(p.pid, os.WNOHANG)[0]:
                    reaped += 1
            except ChildProcessError:
                pass
    return reaped


# --- files --------------------------------------------------------------------------------------
# A build makes its trees as deep as it likes (a 5,000-deep folder is a few lines of script); the
# standard library's os.walk and shutil.rmtree recurse once per level (Python 3.11), and fail on it
# with RecursionError. These two never recurse.


def walk(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(top) top-down, without recursion; links are listed as files, never followed. Prune
    by editing the yielded folder list, as with os.walk."""
    todo = [top]
    while todo:
        folder = todo.pop()
        dirs, files = [], []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    (dirs if entry.is_dir(follow_symlinks=False) else files).append(entry.name)
        except OSError:
            continue
        yield folder, dirs, files
        todo.extend(os.path.join(folder, d) for d in reversed(dirs))


def remove_tree(path: str) -> bool:
    """shutil.rmtree(path, ignore_errors=True), without recursion and without following a link:
    one folder open at a time, the way down remembered by name. Returns whether it is gone."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.unlink(path)  # a file or a link
            return True
        except OSError:
            return False
    names: list[str] = []
    try:
        while True:
            sub = None
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if sub is not None:
                child = os.open(sub, flags, dir_fd=fd)
                os.close(fd)
                fd, names = child, [*names, sub]
                continue
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def chown_tree(path: str, uid: int, gid: int, *, only_from: Iterable[int] | None = None) -> int:
    """lchown everything under `path` (links themselves, never their targets). With `only_from`,
    only entries owned by those uids change hands (never a system file a build hard-linked)."""
    allowed = None if only_from is None else set(only_from)
    count = 0
    for folder, dirs, files in walk(path):
        for full in [folder] if folder == path else []:
            count += _chown_one(full, uid, gid, allowed)
        for name in dirs + files:
            count += _chown_one(os.path.join(folder, name), uid, gid, allowed)
    return count


def _chown_one(path: str, uid: int, gid: int, allowed: set[int] | None) -> int:
    st = os.lstat(path)
    if st.st_uid == uid or (allowed is not None and st.st_uid not in allowed):
        return 0
    os.lchown(path, uid, gid)
    return 1


def closed_ancestor(path: str) -> str:
    """The first folder above `path` (or `path` itself) that others may not pass through, or ""."""
    current = os.path.abspath(path)
    while True:
        try:
            if not os.stat(current).st_mode & stat.S_IXOTH:
                return current
        except OSError:
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return ""
        current = parent


def tree_owner(path: str) -> int | None:
    try:
        return os.lstat(path).st_uid
    except OSError:
        return None


def remove_files_of(uid: int, dirs: Sequence[str] = SHARED_TMP_DIRS, skip: Sequence[str] = ()) -> int:
    """Remove what `uid` left in world-writable folders (it could be read, or trusted, by a later
    build of the same uid). Returns how many entries went."""

    skipped = {os.path.realpath(s) for s in skip}
    removed = 0
    for top in dirs:
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid != uid or os.path.realpath(entry.path) in skipped:
                continue
            try:
                if stat.S_ISDIR(st.st_mode):
                    if not remove_tree(entry.path):
                        raise OSError(errno.EIO, f"could not remove {entry.path}")
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
    return removed
