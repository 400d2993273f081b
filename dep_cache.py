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

import concurrent.futures
import contextlib
import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tarfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sandbox
from errors import FcBuildError, SourceNotFound
from settings import library_path
from toolchain import NodeInstall, PackageManager

MARKER = ".fcbuild-cache.json"  # inside every packed entry: the key it was made for
FORMAT = "fcbuild-deps-v3"
SHARD_BYTES = 16 * 1024**2  # about this much of the tree per shard, up to MAX_SHARDS
MAX_SHARDS = 8
SHARDS_META = "fcbuild-shards"  # the object's x-oss-meta-fcbuild-shards: each shard's offset
UNPACK_CHUNK = 1 << 20  # at most this much unpacked per step, whatever a shard's compression ratio
NESTED = "nested"  # in an entry: <relative folder>/node_modules of each workspace package
MAX_NESTED_DEPTH = 4


def nested_trees(project: str) -> list[str]:
    """The folders under `project` (not the project itself, none inside a node_modules) that hold a
    node_modules of their own: a workspace's packages after a workspace install."""
    found = []
    for folder, dirs, _ in sandbox.walk(project):
        rel = os.path.relpath(folder, project)
        depth = 0 if rel == "." else rel.count(os.sep) + 1
        if rel != "." and "node_modules" in dirs and not os.path.islink(os.path.join(folder, "node_modules")):
            found.append(rel.replace(os.sep, "/"))
        dirs[:] = [d for d in dirs if d != "node_modules" and not d.startswith(".") and depth < MAX_NESTED_DEPTH]
    return sorted(found)


def _move_trees(source: str, dest: str, rels: list[str]) -> None:
    """Move `source`/node_modules and `source`/nested/<rel>/node_modules to their places under `dest`."""
    os.rename(os.path.join(source, "node_modules"), os.path.join(dest, "node_modules"))
    for rel in rels:
        tree = os.path.join(source, NESTED, rel, "node_modules")
        home = os.path.join(dest, rel)
        if ".." in rel.split("/") or not os.path.isdir(tree) or not os.path.isdir(home) or os.path.islink(home):
            continue
        os.rename(tree, os.path.join(home, "node_modules"))


def cache_key(lockfile: str, lock_bytes: bytes, node: NodeInstall, pm: PackageManager, site: str) -> str:
    """`site` names the target (bucket and prefix): sites never share a tree, so a build that
    edits its node_modules can only reach later builds of its own site."""
    digest = hashlib.sha256()
    for part in (
        FORMAT,
        site,
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
        self._sizes: dict[str, int] = {}  # measured by admit(), recorded by measure_and_evict()
        self._packs = 0  # hard-linked copies being packed for OSS (they hold their trees' blocks)
        self.refused = ""  # why admit() last refused a tree

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
            with open(os.path.join(self._dir(key), "meta.json"), encoding="utf-8") as f:
                rels = list(json.load(f).get("nested", []))
            _move_trees(self._dir(key), project, rels)
        except (OSError, ValueError):
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
        rels = nested_trees(project)
        with self._lock:
            self._busy[key] = "saving"  # until the caller's release(): it may pack the entry for OSS
            sandbox.remove_tree(entry)
            os.makedirs(entry)
            os.rename(tree, os.path.join(entry, "node_modules"))
            for rel in rels:
                os.makedirs(os.path.join(entry, NESTED, rel))
                os.rename(os.path.join(project, rel, "node_modules"), os.path.join(entry, NESTED, rel, "node_modules"))
            with open(os.path.join(entry, "meta.json"), "w", encoding="utf-8") as f:
                json.dump({"key": key, "usedAt": time.time(), "bytes": None, "nested": rels}, f)
        return True

    def admit(self, key: str) -> bool:
        """Measure a kept entry (held busy by the caller): a tree over the whole cap, or with a sparse
        file (a hole of more than SPARSE_HOLE_BYTES: what an 8 GiB `truncate` costs a build nothing to
        make, and would cost every site's warm trees and the OSS copy), is removed, never kept. Slow:
        background."""
        entry = self._dir(key)
        size, sparse = 0, ""
        for tree in (os.path.join(entry, "node_modules"), os.path.join(entry, NESTED)):
            more, hole = _tree_stats(tree)
            size, sparse = size + more, sparse or hole
        why = f"it holds a sparse file ({sparse})" if sparse else ""
        if not why and size > self.max_bytes:
            why = f"it is {size // 2**20} MB, over FCBUILD_CACHE_MAX_MB ({self.max_bytes // 2**20} MB)"
        if why:
            sandbox.remove_tree(entry)
            self.refused = why
            return False
        self._sizes[key] = size
        return True

    def free_up(self, needed_bytes: int, path: str) -> int:
        """Remove least recently used entries that no build holds until `path`'s disk has
        `needed_bytes` free (a build that filled the disk must not fail every later one). Returns how
        many went."""
        removed = 0
        deadline = time.monotonic() + 30
        with self._changed:
            # A tree being packed for OSS is held until its copy is made, and the copy (hard links) holds
            # its blocks until the pack is done: packs end (or fail on the full disk) soon.
            while ("saving" in self._busy.values() or self._packs) and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            for _, name, _ in sorted(self._entries()):
                if shutil.disk_usage(path).free >= needed_bytes:
                    break
                if name in self._busy:
                    continue
                sandbox.remove_tree(os.path.join(self.root, name))
                removed += 1
        return removed

    def _entries(self) -> list[tuple[float, str, int]]:
        """(used at, name, bytes) of every entry; a half-written one (not busy) is removed. Under the lock."""
        entries = []
        for name in os.listdir(self.root) if os.path.isdir(self.root) else []:
            try:
                with open(os.path.join(self.root, name, "meta.json"), encoding="utf-8") as f:
                    meta = json.load(f)
                entries.append((float(meta["usedAt"]), name, int(meta["bytes"] or 0)))
            except (OSError, ValueError, KeyError, TypeError):
                if name not in self._busy:  # a half-written entry: not worth keeping
                    sandbox.remove_tree(os.path.join(self.root, name))
        return entries

    def measure_and_evict(self, key: str) -> None:
        """Record the entry's size, then drop least recently used entries over the cap. Slow: background."""
        entry = self._dir(key)
        size = self._sizes.pop(key, None)
        if size is None:
            size = _tree_stats(os.path.join(entry, "node_modules"))[0] + _tree_stats(os.path.join(entry, NESTED))[0]
        meta_path = os.path.join(entry, "meta.json")
        with self._lock:
            if os.path.exists(meta_path):
                with open(meta_path, encoding="utf-8") as f:
                    meta = json.load(f)
                meta["bytes"] = size
                with open(meta_path, "w", encoding="utf-8") as f:
                    json.dump(meta, f)
            entries = self._entries()
            total = sum(e[2] for e in entries)
            for _, name, nbytes in sorted(entries):
                if total <= self.max_bytes:
                    break
                if name in self._busy:
                    continue
                sandbox.remove_tree(os.path.join(self.root, name))
                total -= nbytes

    def release(self, key: str) -> None:
        with self._changed:
            self._busy.pop(key, None)
            self._changed.notify_all()

    @contextlib.contextmanager
    def packing(self) -> Iterator[None]:
        with self._changed:
            self._packs += 1
        try:
            yield
        finally:
            with self._changed:
                self._packs -= 1
                self._changed.notify_all()

    def snapshot(self, key: str, dest: str) -> bool:
        """Hard-link the entry's tree into `dest` (metadata only: fast), so it can be packed for OSS
        while the entry itself goes back to work. Caller holds the entry busy while this runs."""
        entry = self._dir(key)
        if not os.path.isdir(os.path.join(entry, "node_modules")):
            return False
        os.makedirs(dest)
        for name in ("node_modules", NESTED, "meta.json"):
            source = os.path.join(entry, name)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(dest, name), symlinks=True, copy_function=os.link)
            elif os.path.isfile(source):
                shutil.copy2(source, os.path.join(dest, name))
        return True


def pack(entry: str, key: str, dest: str) -> list[int]:
    """Write an entry (its node_modules, and those of a workspace's packages) and the key marker as
    shards: gzip members one after the other in `dest`, each a tar of whole packages, of about equal
    size, so that a restore fetches and unpacks them side by side. Returns each shard's offset."""
    try:
        with open(os.path.join(entry, "meta.json"), encoding="utf-8") as f:
            rels = list(json.load(f).get("nested", []))
    except (OSError, ValueError):
        rels = []
    units = _pack_units(entry, rels)
    total = sum(size for _, _, size in units)
    count = max(1, min(MAX_SHARDS, total // SHARD_BYTES))
    shards: list[list[tuple[str, str]]] = [[] for _ in range(count)]
    loads = [0] * count
    for arcname, path, size in sorted(units, key=lambda u: -u[2]):  # largest first, to the lightest shard
        lightest = loads.index(min(loads))
        shards[lightest].append((arcname, path))
        loads[lightest] += size
    marker = f"{dest}.marker.json"
    with open(marker, "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "key": key, "nested": rels}, f)
    offsets = []
    try:
        with open(dest, "wb") as out:
            for index, shard in enumerate(shards):
                offsets.append(out.tell())
                with (
                    gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz,
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
                ):
                    if index == 0:
                        tar.add(marker, arcname=MARKER)
                    for arcname, path in sorted(shard):
                        tar.add(path, arcname=arcname)
    finally:
        os.unlink(marker)
    return offsets


def _pack_units(entry: str, rels: list[str]) -> list[tuple[str, str, int]]:
    """(name in the archive, path, bytes) of each package of the entry's trees: the units shards are
    made of (a scope such as @babel counts each of its packages)."""
    units = []
    roots = [("node_modules", os.path.join(entry, "node_modules"))]
    roots += [(f"{NESTED}/{rel}/node_modules", os.path.join(entry, NESTED, rel, "node_modules")) for rel in rels]
    for arc_root, root in roots:
        if not os.path.isdir(root):
            continue
        for item in sorted(os.scandir(root), key=lambda e: e.name):
            children = [item]
            if item.name.startswith("@") and item.is_dir(follow_symlinks=False):
                children = sorted(os.scandir(item.path), key=lambda e: e.name)
                if not children:
                    children = [item]
            for child in children:
                arcname = f"{arc_root}/{os.path.relpath(child.path, root)}"
                size = _tree_stats(child.path)[0] if child.is_dir(follow_symlinks=False) else 512
                units.append((arcname, child.path, size))
    return units


def _shard_offsets(text: str, size: int) -> list[int] | None:
    """The shard offsets an entry's metadata names, if they make sense for an object of `size`."""
    try:
        offsets = [int(part) for part in text.split(",")]
    except ValueError:
        return None
    if not offsets or offsets[0] != 0 or len(offsets) > MAX_SHARDS:
        return None
    if any(b <= a for a, b in zip(offsets, offsets[1:], strict=False)) or offsets[-1] >= size:
        return None
    return offsets


class BuildCache:
    """One build's use of the cache: restore before install, keep after the build."""

    def __init__(
        self,
        settings: Any,
        warm_cache: WarmCache,
        in_background: Callable[[str, Callable[[], None]], None],
        storage: Any,
        workspace: str,
        *,
        oss_location: tuple[str, str],
        site: str,
        log: Any,
        run_as: tuple[int, int] | None = None,
        launch_env: Mapping[str, str] | None = None,
    ) -> None:
        """`storage` is the request's oss_io.OssClient; `oss_location` the (bucket, prefix) of packed trees."""
        self.settings, self.warm_cache, self.in_background, self.storage = settings, warm_cache, in_background, storage
        self.workspace, self.log = workspace, log
        self.oss_bucket, self.oss_prefix = oss_location
        self.site = site
        self.run_as = run_as  # (uid, gid) that unpacks an entry from OSS: the build's user
        self.launch_env = launch_env or {}
        self.project = ""
        self.outcome = CacheOutcome()
        self.installed = False
        self._replace_oss = False

    def _oss_location(self) -> tuple[str, str]:
        return self.oss_bucket, f"{self.oss_prefix}{self.outcome.key}.tar.gz"

    def restore(self, pm: PackageManager, node: NodeInstall) -> None:
        settings = self.settings
        if not settings.cache_enabled:
            self.outcome.note = "disabled"
            return
        if os.path.exists(os.path.join(self.project, "node_modules")):
            self.outcome.note = "the source has its own node_modules"
            return
        if pm.lockfile:
            with open(os.path.join(self.project, pm.lockfile), "rb") as f:
                self.outcome.key = cache_key(pm.lockfile, f.read(), node, pm, self.site)
        else:  # no lockfile: what package.json asks for (the install still runs and decides)
            self.outcome.key = cache_key("package.json", dependency_fields(self.project), node, pm, self.site)
            self.outcome.note = "no lockfile: keyed by package.json's dependencies"
        started = time.monotonic()
        if self.warm_cache.take(self.outcome.key, self.project):
            self.outcome.hit = "warm"
        else:
            self.outcome.hit = self._restore_from_oss()
        self.outcome.restore_seconds = time.monotonic() - started
        self.log.info("dependency cache %s (key %s)", self.outcome.hit, self.outcome.key[:16])

    def _restore_from_oss(self) -> str:
        bucket, key = self._oss_location()
        try:
            head = self.storage.head(bucket, key)
        except SourceNotFound:
            return "miss"
        except FcBuildError as exc:
            self.log.warning("dependency cache oss://%s/%s not read: %s", bucket, key, exc)
            return "miss"
        why = self._unpack(bucket, key, head)
        if why:
            self.log.warning("dependency cache oss://%s/%s ignored and to be replaced: %s", bucket, key, why)
            self.outcome.note = f"OSS entry ignored: {why}"
            self._replace_oss = True
            sandbox.remove_tree(os.path.join(self.project, "node_modules"))
            return "miss"
        return "oss"

    def _unpack(self, bucket: str, key: str, head: Any) -> str:
        """Fetch the entry's shards side by side (a ranged GET each) and unpack each as it arrives
        with the system's tar, run as the build's user, in a folder of the project. Returns "" when
        the trees are in place, else why the entry was ignored."""
        offsets = _shard_offsets(head.meta.get(SHARDS_META, ""), head.size)
        if offsets is None:
            return "no shard index (an entry of another format)"
        tar = shutil.which("tar", path=self.launch_env.get("PATH") or "/usr/bin:/bin")
        if not tar:
            return "no tar on this instance's PATH"
        scratch = os.path.join(self.project, f".fcbuild-deps-{uuid.uuid4().hex[:12]}")
        os.mkdir(scratch, 0o700)
        if self.run_as is not None:
            os.chown(scratch, *self.run_as)
        budget = _Budget(self.settings.max_archive_bytes)
        ends = [*offsets[1:], head.size]
        try:
            with concurrent.futures.ThreadPoolExecutor(len(offsets), thread_name_prefix="deps-shard") as pool:
                futures = [
                    pool.submit(self._unpack_shard, tar, scratch, bucket, key, head.etag, start, end, budget)
                    for start, end in zip(offsets, ends, strict=True)
                ]
                failures = [exc for exc in (f.exception() for f in futures) if exc is not None]
            if failures:  # the failing shard stopped the others (the budget)
                exc = failures[0]
                return f"unreadable ({exc})" if isinstance(exc, FcBuildError) else f"unreadable ({exc!r})"
            with open(os.path.join(scratch, MARKER), encoding="utf-8") as f:
                marker = json.load(f)
            if marker.get("format") != FORMAT or marker.get("key") != self.outcome.key:
                return "the entry was made for another key"
            tree = os.path.join(scratch, "node_modules")
            if not os.path.isdir(tree) or os.path.islink(tree):
                return "the entry has no node_modules"
            _move_trees(scratch, self.project, [r for r in marker.get("nested", []) if isinstance(r, str)])
            return ""
        except (OSError, ValueError) as exc:
            return f"unreadable ({type(exc).__name__}: {exc})"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _unpack_shard(
        self, tar: str, scratch: str, bucket: str, key: str, etag: str, start: int, end: int, budget: _Budget
    ) -> None:
        """One shard: bytes [start, end) of the object, a gzip member holding a tar, streamed through
        zlib (which checks the member's CRC-32 and length) into `tar -x`."""
        env = {"PATH": self.launch_env.get("PATH") or "/usr/bin:/bin", "LC_ALL": "C", **library_path(self.launch_env)}
        identity: dict[str, Any] = {}
        if self.run_as is not None:
            identity = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
        proc = subprocess.Popen(
            [tar, "-x", "-f", "-", "--no-same-owner", "--no-same-permissions", "-C", scratch],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=scratch,
            umask=0o022,
            **identity,
        )
        unzip = zlib.decompressobj(wbits=31)  # one gzip member

        def feed(data: bytes) -> None:
            while data:
                out = unzip.decompress(data, UNPACK_CHUNK)
                budget.take(len(out))
                proc.stdin.write(out)  # type: ignore[union-attr]
                data = unzip.unconsumed_tail
                if unzip.eof and (data or unzip.unused_data):
                    raise FcBuildError("a shard has bytes after its gzip member")

        try:
            self.storage.read_range(bucket, key, start, end, etag, feed)
            if not unzip.eof:
                raise FcBuildError(f"the shard at {start} ends before its gzip member does")
            proc.stdin.close()  # type: ignore[union-attr]
            error = proc.stderr.read().decode("utf-8", "replace").strip()  # type: ignore[union-attr]
            if proc.wait() != 0:
                raise FcBuildError(f"tar: {error[-500:] or f'exit {proc.returncode}'}")
        except BaseException:
            budget.stop()  # the other shards give up at their next chunk
            proc.kill()
            proc.wait()
            raise
        finally:
            for stream in (proc.stdin, proc.stderr):
                try:
                    stream.close()  # type: ignore[union-attr]
                except OSError:
                    pass

    def keep(self, *, to_oss: bool, ok: bool = True) -> None:
        """After the build: the installed tree goes back to the warm cache (a rename), and, after a
        deploy, a packed copy goes to OSS in the background unless one is there already. The tree of a
        build that failed (`ok` False) is never kept: whatever it did to it, and whatever it filled
        the disk with, goes with its workspace."""
        key = self.outcome.key
        if not key or not self.project:
            return
        warm = self.warm_cache
        if not ok:
            warm.release(key)
            self.outcome.saved = "discarded (the build failed)"
            return
        try:
            kept = self.installed and warm.put(key, self.project)
        except OSError as exc:
            self.log.warning("dependency cache not kept: %s", exc)
            kept = False
        if not kept:
            warm.release(key)
            self.outcome.saved = "nothing installed" if self.installed else "discarded (install failed)"
            return
        self.outcome.saved = "warm"
        bucket, oss_key = self._oss_location()
        upload = to_oss and (self._replace_oss or self.outcome.hit != "oss")
        if upload:
            self.outcome.saved = "warm+oss"
        self.in_background(f"cache-{key[:8]}", lambda: self._save(key, bucket, oss_key, upload))

    def _save(self, key: str, bucket: str, oss_key: str, upload: bool) -> None:
        """Background: copy the tree to OSS if it is not there. The warm entry is held only while its
        hard-linked snapshot is made, so a rebuild right after this one does not wait for the upload."""
        warm = self.warm_cache
        staging = os.path.join(self.settings.workspace_root, "cache", f"save-{uuid.uuid4().hex}")
        admitted = False
        with warm.packing():
            admitted = self._pack_and_upload(key, bucket, oss_key, upload, staging)
        if admitted:
            warm.measure_and_evict(key)

    def _pack_and_upload(self, key: str, bucket: str, oss_key: str, upload: bool, staging: str) -> bool:
        warm = self.warm_cache
        snapshot = os.path.join(staging, "entry")
        admitted = False
        try:
            try:
                admitted = warm.admit(key)
                if not admitted:
                    self.log.warning("dependency cache: the tree was not kept: %s", warm.refused)
                needed = admitted and upload and (self._replace_oss or not self.storage.object_exists(bucket, oss_key))
                os.makedirs(staging)
                have = needed and warm.snapshot(key, snapshot)
            finally:
                warm.release(key)
            if have:
                _lower_thread_priority()  # packing must not slow the next build on the same instance
                started = time.monotonic()
                packed = os.path.join(staging, "deps.tar.gz")
                offsets = pack(snapshot, key, packed)
                size = self.storage.put_file(
                    bucket,
                    oss_key,
                    packed,
                    content_type="application/gzip",
                    private=True,
                    meta={SHARDS_META: ",".join(map(str, offsets))},
                )
                self.log.info(
                    "dependency cache saved to oss://%s/%s (%.1f MiB in %.1fs)",
                    bucket,
                    oss_key,
                    size / 2**20,
                    time.monotonic() - started,
                )
        except Exception as exc:  # a cache that cannot be saved costs the next cold build time, nothing else
            self.log.warning("dependency cache not saved to oss://%s/%s: %s", bucket, oss_key, exc)
        finally:
            sandbox.remove_tree(staging)
        return admitted


DEPENDENCY_FIELDS = (
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
    "overrides",
    "resolutions",
    "pnpm",
    "workspaces",
)


def dependency_fields(project: str) -> bytes:
    """What package.json says about dependencies, canonically (a project without a lockfile)."""
    try:
        with open(os.path.join(project, "package.json"), encoding="utf-8") as f:
            package = json.load(f)
    except (OSError, ValueError):
        package = {}
    fields = {k: package.get(k) for k in DEPENDENCY_FIELDS if isinstance(package, dict) and k in package}
    return json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()


def _lower_thread_priority() -> None:
    try:  # Linux: a nice value is per thread
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (OSError, AttributeError):
        pass


class _Budget:
    """The bytes all shards of a restore may unpack, together (a small entry must not fill the disk)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self._lock, self._stopped = limit, 0, threading.Lock(), False

    def take(self, nbytes: int) -> None:
        with self._lock:
            self.used += nbytes
            if self._stopped:
                raise FcBuildError("another shard failed")
            if self.used > self.limit:
                raise FcBuildError(f"the entry unpacks to more than {self.limit} bytes")

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


SPARSE_HOLE_BYTES = 64 * 2**20  # a file whose size passes what it occupies on disk by this much is sparse


def _tree_stats(path: str) -> tuple[int, str]:
    """The bytes under `path` (their apparent sizes), and the first sparse file's path, or ""."""
    total, sparse = 0, ""
    for folder, _, files in sandbox.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += st.st_size
            if not sparse and st.st_size - st.st_blocks * 512 > SPARSE_HOLE_BYTES:
                sparse = os.path.relpath(os.path.join(folder, name), os.path.dirname(path))
    return total, sparse
