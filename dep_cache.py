"""The dependency cache: installed `node_modules` trees, kept by what determines them.

Key: the lockfile's bytes, the Node version, the package manager and its version, and the
platform. A cache can only make the install faster, never the build different: the package
manager's install always runs on the restored tree (and for npm, a changed lockfile means a
clean `npm ci` after all).

- Warm (this instance's disk): `<workspace root>/cache/deps/<key>/node_modules`, moved into the
  next workspace with the same key by a rename and moved back after the build; the least recently
  used entries go when the total passes FCBUILD_CACHE_MAX_MB.
- Cold (OSS): `<key>.tar.gz` under FCBUILD_CACHE_BUCKET/FCBUILD_CACHE_PREFIX (default: the target
  bucket, `<prefix>.fcbuild/deps/`), restored when the instance has none; saved in the background
  after a deploy, and flushed at stop.

A corrupt, partial or foreign entry is ignored (and replaced), never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tarfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from archive import Limits, extract_archive
from errors import FcBuildError
from toolchain import NodeInstall, PackageManager

MARKER = ".fcbuild-cache.json"  # inside every packed entry: the key it was made for
FORMAT = "fcbuild-deps-v1"


def cache_key(lockfile: str, lock_bytes: bytes, node: NodeInstall, pm: PackageManager) -> str:
    digest = hashlib.sha256()
    for part in (
        FORMAT,
        lockfile,
        node.version_text,
        f"{pm.name}@{pm.version or 'default'}{'+berry' if pm.berry else ''}",
        f"{platform.system()}-{platform.machine()}",
    ):
        digest.update(part.encode() + b"\0")
    digest.update(lock_bytes)
    return digest.hexdigest()[:40]


@dataclass
class CacheOutcome:
    key: str = ""
    hit: str = "none"  # none (no lockfile) | miss | warm | oss
    restore_seconds: float = 0.0
    saved: str = ""  # where the tree went afterwards: warm, warm+oss, discarded
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"hit": self.hit, "key": self.key[:16], "restoreSeconds": round(self.restore_seconds, 3)}
        if self.saved:
            doc["saved"] = self.saved
        if self.note:
            doc["note"] = self.note
        return doc


class WarmCache:
    """node_modules trees on this instance's disk, one folder per key. Lives on the Instance."""

    def __init__(self, root: str, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._busy: dict[str, str] = {}  # key -> "build" (in a workspace) or "saving" (being packed for OSS)

    def _dir(self, key: str) -> str:
        return os.path.join(self.root, key)

    def take(self, key: str, project: str, wait_s: float = 120.0) -> bool:
        """Move the tree for `key` into `project`. False when there is none, or another build has it.
        An entry being packed for OSS is waited for (at most `wait_s`): that beats a reinstall."""
        deadline = time.monotonic() + wait_s
        with self._changed:
            while self._busy.get(key) == "saving" and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            source = os.path.join(self._dir(key), "node_modules")
            if key in self._busy or not os.path.isdir(source):
                return False
            self._busy[key] = "build"
        try:
            os.rename(source, os.path.join(project, "node_modules"))
        except OSError:
            self.release(key)
            return False
        return True

    def put(self, key: str, project: str) -> bool:
        """Move `project/node_modules` back under `key` (replacing what was there)."""
        tree = os.path.join(project, "node_modules")
        if not os.path.isdir(tree) or os.path.islink(tree):
            self.release(key)
            return False
        entry = self._dir(key)
        with self._lock:
            self._busy[key] = "saving"  # until the caller's release(): it may pack the entry for OSS
            shutil.rmtree(entry, ignore_errors=True)
            os.makedirs(entry)
            os.rename(tree, os.path.join(entry, "node_modules"))
            with open(os.path.join(entry, "meta.json"), "w", encoding="utf-8") as f:
                json.dump({"key": key, "usedAt": time.time(), "bytes": None}, f)
        return True

    def measure_and_evict(self, key: str) -> None:
        """Record the entry's size, then drop least recently used entries over the cap. Slow: background."""
        entry = self._dir(key)
        size = _tree_bytes(os.path.join(entry, "node_modules"))
        meta_path = os.path.join(entry, "meta.json")
        with self._lock:
            if os.path.exists(meta_path):
                with open(meta_path, encoding="utf-8") as f:
                    meta = json.load(f)
                meta["bytes"] = size
                with open(meta_path, "w", encoding="utf-8") as f:
                    json.dump(meta, f)
            entries = []
            for name in os.listdir(self.root) if os.path.isdir(self.root) else []:
                try:
                    with open(os.path.join(self.root, name, "meta.json"), encoding="utf-8") as f:
                        meta = json.load(f)
                    entries.append((float(meta["usedAt"]), name, int(meta["bytes"] or 0)))
                except (OSError, ValueError, KeyError, TypeError):
                    if name not in self._busy:  # a half-written entry: not worth keeping
                        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
            total = sum(e[2] for e in entries)
            for _, name, nbytes in sorted(entries):
                if total <= self.max_bytes:
                    break
                if name in self._busy:
                    continue
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
                total -= nbytes

    def release(self, key: str) -> None:
        with self._changed:
            self._busy.pop(key, None)
            self._changed.notify_all()

    def snapshot(self, key: str, dest: str) -> bool:
        """Hard-link the entry's tree into `dest` (metadata only: fast), so it can be packed for OSS
        while the entry itself goes back to work. Caller holds the entry busy while this runs."""
        tree = os.path.join(self._dir(key), "node_modules")
        if not os.path.isdir(tree):
            return False
        shutil.copytree(tree, dest, symlinks=True, copy_function=os.link)
        return True


def pack(tree: str, key: str, dest: str) -> None:
    """Write `tree` (a node_modules) and the key marker as a .tar.gz entry."""
    marker = f"{dest}.marker.json"
    with open(marker, "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "key": key}, f)
    try:
        with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
            tar.add(marker, arcname=MARKER)
            tar.add(tree, arcname="node_modules")
    finally:
        os.unlink(marker)


def restore_from_archive(archive: str, scratch: str, key: str, project: str, limits: Limits) -> str:
    """Extract a packed entry into `scratch` and move its node_modules into `project`.
    Returns "" on success, else why the entry was ignored."""
    try:
        root = extract_archive(archive, scratch, limits)
        with open(os.path.join(root, MARKER), encoding="utf-8") as f:
            marker = json.load(f)
        if marker.get("format") != FORMAT or marker.get("key") != key:
            return "the entry was made for another key"
        tree = os.path.join(root, "node_modules")
        if not os.path.isdir(tree) or os.path.islink(tree):
            return "the entry has no node_modules"
        os.rename(tree, os.path.join(project, "node_modules"))
        return ""
    except FcBuildError as exc:
        return f"unreadable ({exc})"
    except (OSError, ValueError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _tree_bytes(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total
