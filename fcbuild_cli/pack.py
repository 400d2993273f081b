"""The project as a source archive: which files, and the same bytes for the same files.

- A git work tree: the files git tracks, plus untracked ones that are not ignored (`git ls-files`).
- Otherwise: everything but what `.gitignore` and `.fcbuildignore` exclude (gitignore rules, every
  such file in the tree applying below its folder).
- Never `node_modules/`, `.git/`, or the build's output folder.

The archive is deterministic: entries sorted, times, owners and modes fixed (0644, or 0755 where any
execute bit is set), gzip with no name and no time. An unchanged folder is the same archive, and its
key names its digest, so it is not uploaded twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import stat
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import pathspec

ALWAYS_LEFT_OUT = ("node_modules", ".git")


def framework_of(root: str) -> Any:
    """The framework table's entry for the project at `root` (frameworks.Framework), or None."""
    import frameworks

    try:
        with open(os.path.join(root, "package.json"), encoding="utf-8") as f:
            package = json.load(f)
    except (OSError, ValueError):
        return None
    return frameworks.detect(package) if isinstance(package, dict) else None


def output_folder(root: str, configured: str = "") -> str:
    """The build's output folder, never packed: `configured` (build.output_dir), else the framework
    table's, else dist."""
    framework = framework_of(root)
    return configured or (framework.output if framework else "dist")


def project_files(root: str, output_dir: str = "") -> list[str]:
    """Relative POSIX paths of the files to pack, sorted."""
    root = os.path.abspath(root)
    listed = _git_files(root)
    files = listed if listed is not None else _walk(root)
    out = output_dir.strip("/")
    kept = []
    for rel in files:
        if ("node_modules" in rel or ".git" in rel) and any(p in ALWAYS_LEFT_OUT for p in rel.split("/")):
            continue
        if out and (rel == out or rel.startswith(out + "/")):
            continue
        kept.append(rel)  # what is neither a file nor a link is left out when packed
    return sorted(set(kept))


def _git_files(root: str) -> list[str] | None:
    """What git lists in the work tree at `root`, or None where `root` is in none (or git is not
    installed). Listing first and asking only when git refuses saves a git run on every deploy."""
    argv = ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=120)
    except OSError:
        return None
    if done.returncode == 0:
        return [p.decode("utf-8", "surrogateescape") for p in done.stdout.split(b"\0") if p]
    inside = subprocess.run(
        ["git", "-C", root, "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True, timeout=30
    )
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)


def _walk(root: str) -> list[str]:
    found: list[str] = []
    specs: list[tuple[str, pathspec.PathSpec]] = []  # (folder, its ignore rules)
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root).replace(os.sep, "/")
        rel_folder = "" if rel_folder == "." else rel_folder + "/"
        lines = []
        for name in (".gitignore", ".fcbuildignore"):
            if name in files:
                with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                    lines.extend(f.read().splitlines())
        if lines:
            specs.append((rel_folder, pathspec.GitIgnoreSpec.from_lines(lines)))

        def ignored(rel: str, is_dir: bool) -> bool:
            for base, spec in specs:
                if rel.startswith(base) and spec.match_file(rel[len(base) :] + ("/" if is_dir else "")):
                    return True
            return False

        dirs[:] = sorted(d for d in dirs if d not in ALWAYS_LEFT_OUT and not ignored(rel_folder + d, True))
        found.extend(rel_folder + f for f in sorted(files) if not ignored(rel_folder + f, False))
    return found


def pack(root: str, files: Iterable[str], top: str = "project") -> bytes:
    """A .tar.gz of `files` under `top/`, the same bytes for the same contents. The ustar headers are
    written here (tarfile's own cost ~70 us a file: 6x `git archive` on 10,000 files), with a PAX
    record where a name or size does not fit; any tar reader reads it."""
    out = io.BytesIO()
    out.write(_GZIP_HEADER)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    state = {"crc": 0, "size": 0}
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)

    def compress() -> None:  # zlib lets go of the interpreter: reading and deflating overlap
        while (chunk := chunks.get()) is not None:
            state["crc"] = zlib.crc32(chunk, state["crc"])
            state["size"] += len(chunk)
            out.write(deflate.compress(chunk))

    worker = threading.Thread(target=compress, name="deflate", daemon=True)
    worker.start()
    try:
        batch: list[bytes] = []
        pending = 0
        for entry in _entries(root, top, sorted(files)):
            batch.append(entry)
            pending += len(entry)
            if pending >= 1 << 20:
                chunks.put(b"".join(batch))
                batch, pending = [], 0
        batch.append(b"\0" * 1024)
        chunks.put(b"".join(batch))
    finally:
        chunks.put(None)
        worker.join()
    out.write(deflate.flush())
    out.write(struct.pack("<II", state["crc"] & 0xFFFFFFFF, state["size"] & 0xFFFFFFFF))
    return out.getvalue()


def _entries(root: str, top: str, files: list[str]) -> Iterator[bytes]:
    """The archive's pieces, file by file: header, contents, padding. A file is opened before it is
    looked at (open, fstat, read, close: one call fewer than lstat first); what the open refuses
    with O_NOFOLLOW is looked at with lstat, which is how a symlink is found."""
    base = root.rstrip("/") + "/"
    head = top.encode("utf-8", "surrogateescape") + b"/"
    for rel in files:
        full = base + rel
        name = head + rel.encode("utf-8", "surrogateescape")
        try:
            fd = os.open(full, _OPEN)
        except OSError:
            st = os.lstat(full)
            if not stat.S_ISLNK(st.st_mode):
                raise
            yield _entry(name, b"", 0o777, b"2", os.readlink(full).encode("utf-8", "surrogateescape"))
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue  # a folder (a submodule), a pipe, a device: not packed
            size = st.st_size
            data = os.read(fd, size)
            while len(data) < size:  # a large file comes in several reads
                more = os.read(fd, size - len(data))
                if not more:
                    break
                data += more
        finally:
            os.close(fd)
        executable = st.st_mode & 0o111 != 0
        if len(name) <= 100 and len(data) < 8**11:  # the common case: one header, no PAX record
            size_field = b"%011o\0" % len(data)
            checksum = _FAST_SUM[executable] + sum(name) + sum(size_field)
            yield b"%s%s%s%s%06o\0 %s%s%s" % (
                name.ljust(100, b"\0"), _FAST_MODE[executable], size_field, _MTIME, checksum, _FAST_TAIL,
                data, _ZEROS[: -len(data) % 512],
            )  # fmt: skip
        else:
            yield _entry(name, data, 0o755 if executable else 0o644, b"0", b"")


_ZEROS = bytes(512)

# Where a file is opened to be packed: never through a symlink, never waiting on a pipe, never
# taking a terminal, bytes as they are (O_BINARY: Windows); each flag where the system has it.
_OPEN = os.O_RDONLY
for _flag in ("O_CLOEXEC", "O_NOFOLLOW", "O_NONBLOCK", "O_NOCTTY", "O_BINARY"):
    _OPEN |= getattr(os, _flag, 0)

# gzip (RFC 1952): deflate, no flags, mtime 0, no extra flags, OS unknown: the same bytes everywhere.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _entry(name: bytes, data: bytes, mode: int, kind: bytes, link: bytes) -> bytes:
    pax = {}
    prefix, short = b"", name
    if len(name) > 100:
        cut = name.rfind(b"/", 0, 156)
        if cut > 0 and len(name) - cut - 1 <= 100:
            prefix, short = name[:cut], name[cut + 1 :]
        else:
            pax[b"path"], short = name, name[:100]
    if len(link) > 100:
        pax[b"linkpath"], link = link, link[:100]
    if len(data) >= 8**11:
        pax[b"size"] = str(len(data)).encode()
    head = b""
    if pax:
        records = b"".join(_pax_record(k, v) for k, v in pax.items())
        head = _header(b"././@PaxHeader", len(records), 0o644, b"x", b"", b"") + records + _pad(len(records))
    size = len(data) if kind == b"0" else 0
    return head + _header(short, size if size < 8**11 else 0, mode, kind, link, prefix) + data + _pad(len(data))


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length += 1
    return str(length).encode() + body


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 512)


_USTAR = struct.Struct("100s8s16s12s20s1s100s8s64s16s155s12s")
_OWNERS = b"%07o\0%07o\0" % (0, 0)  # uid, gid
_MTIME_AND_SUM = b"%011o\0" % 0 + b" " * 8  # the checksum counted as spaces
_NAMES_AND_DEVICES = (b"\0" * 64, b"%07o\0%07o\0" % (0, 0))


def _header(name: bytes, size: int, mode: int, kind: bytes, link: bytes, prefix: bytes) -> bytes:
    block = _USTAR.pack(
        name, b"%07o\0" % mode, _OWNERS, b"%011o\0" % size, _MTIME_AND_SUM, kind, link, b"ustar\x0000",
        _NAMES_AND_DEVICES[0], _NAMES_AND_DEVICES[1], prefix, b"",
    )  # fmt: skip
    return b"%s%06o\0 %s" % (block[:148], sum(block), block[156:])


# A regular file's header in the common case, around its name, size and checksum: the same bytes
# _header writes. By mode (0644, 0755): the mode and owners fields, and the checksum of everything
# but the name and the size field (the checksum field counted as spaces).
_FAST_MODE = (b"%07o\0" % 0o644 + _OWNERS, b"%07o\0" % 0o755 + _OWNERS)
_FAST_TAIL = _USTAR.pack(b"", b"", b"", b"", b"", b"0", b"", b"ustar\x0000", *_NAMES_AND_DEVICES, b"", b"")[156:]
_MTIME = b"%011o\0" % 0
_FAST_SUM = tuple(sum(mode) + sum(_MTIME) + 8 * ord(" ") + sum(_FAST_TAIL) for mode in _FAST_MODE)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
