"""Extracting a source archive (.tar.gz, .tgz, .zip) without trusting it.

Every member is checked before anything is written: no absolute paths, no `..`, no link that
leads out of the destination, no device files or FIFOs, and caps on the file count and the
bytes written (archive bombs: a zip's declared sizes can lie, so bytes are counted as they
are written). A refused archive raises InvalidSource naming the member; nothing partial is used.
This does not rely on `tarfile`'s extraction filters, which Python 3.11.2 (the frozen
binary's interpreter) does not have.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zipfile
from dataclasses import dataclass

from errors import InvalidSource

CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 4 * 1024**3
    max_files: int = 200_000


def extract_archive(archive: str, dest: str, limits: Limits = Limits()) -> str:
    """Extract `archive` into the empty folder `dest`. Returns the project root: `dest`, or
    its only top-level folder when there is exactly one (as in a GitHub archive)."""
    os.makedirs(dest, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, limits)
    else:
        try:
            with tarfile.open(archive, "r:*") as tar:
                _extract_tar(tar, dest, limits)
        except tarfile.TarError as exc:
            raise InvalidSource(f"source archive: not a readable .tar.gz/.tgz or .zip ({exc})") from None
        except EOFError:
            raise InvalidSource("source archive: truncated") from None
    entries = [e for e in os.listdir(dest) if e not in ("__MACOSX", "pax_global_header")]
    if (
        len(entries) == 1
        and os.path.isdir(os.path.join(dest, entries[0]))
        and not os.path.islink(os.path.join(dest, entries[0]))
    ):
        return os.path.join(dest, entries[0])
    return dest


def read_archive_member(archive: str, name: str, limit: int) -> bytes | None:
    """The bytes of the regular file `name` at the archive's root or in its only top folder (as a
    GitHub download has it), at most `limit` of them; None when there is none. Nothing is extracted."""

    def wanted(member: str) -> bool:
        parts = [p for p in member.replace("\\", "/").split("/") if p not in ("", ".")]
        return parts in ([name],) or (len(parts) == 2 and parts[1] == name)

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if wanted(info.filename) and not info.is_dir() and info.file_size <= limit:
                        return zf.read(info)
            return None
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if wanted(member.name) and member.isreg() and member.size <= limit:
                    src = tar.extractfile(member)
                    return src.read(limit) if src is not None else None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InvalidSource(f"source archive: not a readable .tar.gz/.tgz or .zip ({exc})") from None
    return None


def safe_member_path(dest: str, name: str) -> str:
    """The absolute path for archive member `name` under `dest`, or InvalidSource."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":"):
        raise InvalidSource(f"source archive: {name!r} is an absolute path")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidSource(f"source archive: {name!r} leads out of the project ('..')")
    if not parts:
        return dest
    if any("\0" in p for p in parts):
        raise InvalidSource(f"source archive: {name!r} has a NUL byte")
    return os.path.join(dest, *parts)


def inside(dest: str, path: str) -> bool:
    """Whether `path`, resolved with all its links, is `dest` or lies under it."""
    root = os.path.realpath(dest)
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def _check_link(dest: str, member_path: str, target: str, name: str) -> None:
    if target.startswith("/"):
        raise InvalidSource(f"source archive: link {name!r} points to the absolute path {target!r}")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(os.path.relpath(member_path, dest)), target))
    if resolved == ".." or resolved.startswith("../"):
        raise InvalidSource(f"source archive: link {name!r} -> {target!r} leads out of the project")


def _parent_ready(dest: str, path: str, name: str) -> None:
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if not inside(dest, parent):  # a folder made earlier through a link
        raise InvalidSource(f"source archive: {name!r} would be written through a link out of the project")


class _Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def add_file(self, name: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise InvalidSource(f"source archive: more than {self.limits.max_files} entries (at {name!r})")

    def add_bytes(self, n: int, name: str) -> None:
        self.bytes += n
        if self.bytes > self.limits.max_bytes:
            raise InvalidSource(f"source archive: more than {self.limits.max_bytes} bytes when extracted (at {name!r})")


def _copy(src, path: str, mode: int, budget: _Budget, name: str) -> None:  # type: ignore[no-untyped-def]
    if os.path.lexists(path) and (os.path.islink(path) or not os.path.isfile(path)):
        raise InvalidSource(f"source archive: {name!r} would replace a link or folder")
    with open(path, "wb") as out:
        while chunk := src.read(CHUNK):
            budget.add_bytes(len(chunk), name)
            out.write(chunk)
    os.chmod(path, 0o755 if mode & 0o111 else 0o644)  # no setuid/setgid, no world-writable files


def _extract_tar(tar: tarfile.TarFile, dest: str, limits: Limits) -> None:
    budget = _Budget(limits)
    links: list[tuple[str, str, bool, str]] = []  # made last, so no file is written through one
    for member in tar:
        budget.add_file(member.name)
        path = safe_member_path(dest, member.name)
        if member.isdir():
            _parent_ready(dest, os.path.join(path, "x"), member.name)
        elif member.isreg():
            budget.add_bytes(0, member.name)
            if member.size > limits.max_bytes:
                raise InvalidSource(f"source archive: {member.name!r} is {member.size} bytes, over the limit")
            _parent_ready(dest, path, member.name)
            src = tar.extractfile(member)
            if src is None:
                raise InvalidSource(f"source archive: {member.name!r} cannot be read")
            with src:
                _copy(src, path, member.mode, budget, member.name)
        elif member.issym():
            _check_link(dest, path, member.linkname, member.name)
            links.append((path, member.linkname, True, member.name))
        elif member.islnk():
            target = safe_member_path(dest, member.linkname)
            links.append((path, target, False, member.name))
        else:
            kind = "device file" if member.ischr() or member.isblk() else "FIFO" if member.isfifo() else "special file"
            raise InvalidSource(f"source archive: {member.name!r} is a {kind}")
    _make_links(dest, links)


def _make_links(dest: str, links: list[tuple[str, str, bool, str]]) -> None:
    """Make the links, each resolved through those made before it; then check every symlink
    again through all of them: a chain (`y -> ..` beside `l1 -> y/..`) passes each check alone."""
    for path, target, symbolic, name in links:
        _parent_ready(dest, path, name)
        if os.path.lexists(path):
            raise InvalidSource(f"source archive: link {name!r} would replace an existing entry")
        if symbolic:
            os.symlink(target, path)
        else:
            if not os.path.isfile(target) or os.path.islink(target) or not inside(dest, target):
                raise InvalidSource(f"source archive: hard link {name!r} does not name a file in the archive")
            os.link(target, path)
        if symbolic and not inside(dest, path):
            raise InvalidSource(f"source archive: link {name!r} -> {target!r} leads out of the project")
    for path, target, symbolic, name in links:
        if symbolic and not inside(dest, path):
            raise InvalidSource(f"source archive: link {name!r} -> {target!r} leads out of the project")


def _extract_zip(archive: str, dest: str, limits: Limits) -> None:
    budget = _Budget(limits)
    links: list[tuple[str, str, bool, str]] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                budget.add_file(info.filename)
                path = safe_member_path(dest, info.filename)
                mode = info.external_attr >> 16
                if info.is_dir():
                    _parent_ready(dest, os.path.join(path, "x"), info.filename)
                elif stat.S_ISLNK(mode):
                    target = zf.read(info)[:4096].decode("utf-8", "replace")
                    _check_link(dest, path, target, info.filename)
                    links.append((path, target, True, info.filename))
                elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # zips often carry permission bits only
                    raise InvalidSource(f"source archive: {info.filename!r} is a special file")
                else:
                    _parent_ready(dest, path, info.filename)
                    with zf.open(info) as src:
                        _copy(src, path, mode, budget, info.filename)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise InvalidSource(f"source archive: a broken or unsupported zip ({exc})") from None
    _make_links(dest, links)
