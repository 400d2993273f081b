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

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterable

import pathspec

ALWAYS_LEFT_OUT = ("node_modules", ".git")


def project_files(root: str, output_dir: str = "") -> list[str]:
    """Relative POSIX paths of the files to pack, sorted."""
    root = os.path.abspath(root)
    listed = _git_files(root)
    files = listed if listed is not None else _walk(root)
    out = output_dir.strip("/")
    kept = []
    for rel in files:
        parts = rel.split("/")
        if any(p in ALWAYS_LEFT_OUT for p in parts):
            continue
        if out and (rel == out or rel.startswith(out + "/")):
            continue
        full = os.path.join(root, rel)
        if os.path.islink(full) or os.path.isfile(full):
            kept.append(rel)
    return sorted(set(kept))


def _git_files(root: str) -> list[str] | None:
    try:
        inside = subprocess.run(
            ["git", "-C", root, "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    done = subprocess.run(
        ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return [p.decode("utf-8", "surrogateescape") for p in done.stdout.split(b"\0") if p]


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
    """A .tar.gz of `files` under `top/`, the same bytes for the same contents."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            full = os.path.join(root, rel)
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if os.path.islink(full):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(full), 0o777
                tar.addfile(info)
                continue
            st = os.stat(full)
            info.size = st.st_size
            info.mode = 0o755 if st.st_mode & 0o111 else 0o644
            with open(full, "rb") as f:
                tar.addfile(info, f)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
