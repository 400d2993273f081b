"""Deciding what a deploy uploads: content types, cache policy, and the diff against the last deploy.

A deploy has two phases. Phase 1 uploads new content-addressed files (names no live page uses yet),
with no lock. Phase 2, under the target's lease, switches every file at a stable name (plain assets,
then entry HTML, the root index.html last); the deployer keeps each one's previous version first, so
a failure can put the live site back as it was. Pure functions over plain values, except
`scan_tree`, which reads the output folder once.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Our own table: the stdlib's mimetypes depends on the host's /etc/mime.types and gets
# several web types wrong or leaves them out (.mjs, .webmanifest, .avif, .woff2, .wasm on old hosts).
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".cjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".jsonld": "application/ld+json",
    ".webmanifest": "application/manifest+json",
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".vtt": "text/vtt; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".apng": "image/apng",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".jxl": "image/jxl",
    ".ico": "image/x-icon",
    ".bmp": "image/bmp",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
    ".wasm": "application/wasm",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".wav": "audio/wav",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
IMMUTABLE_DIRS = ("_next/static/",)  # frameworks that promise content-addressed folders
ENTRY_SUFFIXES = (".html", ".htm")


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative, '/'-separated
    size: int
    md5: str  # hex


MANIFEST_FIELDS = ("size", "md5", "content_type", "cache_control")


@dataclass(frozen=True)
class Upload:
    path: str  # relative to the output folder and to the target prefix
    size: int
    md5: str
    content_type: str
    cache_control: str
    hashed: bool = False  # a content-addressed name: new content always comes under a new name

    def manifest_entry(self) -> dict[str, object]:
        return {
            "size": self.size,
            "md5": self.md5,
            "content_type": self.content_type,
            "cache_control": self.cache_control,
        }

    @property
    def is_entry(self) -> bool:
        return self.path.lower().endswith(ENTRY_SUFFIXES)


@dataclass(frozen=True)
class DeployPlan:
    new_assets: tuple[Upload, ...]  # phase 1: content-addressed names no live object holds
    stable: tuple[Upload, ...]  # phase 2, in order: plain assets, entry HTML, the root index.html last
    skipped: tuple[Upload, ...]  # unchanged since the previous deploy (and live as recorded)
    manifest: dict[str, dict[str, object]]  # the new deploy's files
    repaired: tuple[str, ...] = ()  # paths the manifest called unchanged whose live object differs

    @property
    def uploads(self) -> tuple[Upload, ...]:
        return self.new_assets + self.stable

    def stable_groups(self) -> tuple[tuple[Upload, ...], ...]:
        """Phase 2 in the order it switches: plain assets, entry pages, then the root index.html."""
        plain = tuple(u for u in self.stable if not u.is_entry)
        pages = tuple(u for u in self.stable if u.is_entry and u.path != "index.html")
        root = tuple(u for u in self.stable if u.path == "index.html")
        return tuple(g for g in (plain, pages, root) if g)


def content_type_for(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    _, ext = os.path.splitext(name)
    return CONTENT_TYPES.get(ext, DEFAULT_CONTENT_TYPE)


def is_content_hashed(path: str) -> bool:
    """True for names a bundler made unique by content:
    - webpack's and vue-cli's hex `[contenthash:8]`: `main.3f2a9c1b.css`, `element-icons.732389de.ttf`;
    - Vite's and Rollup's 8-character base64url hash, which may hold `-` and `_`: `index-BPvgi06w.js`,
      `Login-Cu-Bo-gk.js`;
    - esbuild's base32 `chunk-5Q2ZPMJN.js`; anything under `_next/static/`.

    Wrong answers differ in cost: a hashed name taken for a plain one is only revalidated,
    a plain name taken for a hashed one is cached for a year. So a token must look random: hex of
    8 or more with both digits and letters; or letters and digits switching at least twice; or a
    capital right after a small letter; an 8-character tail with `-` or `_` must mix capitals and
    small letters and hold no word of four letters. `screenshot2024`, `datepicker`, `Banner2024`,
    `logo-v2-final`, `My-Photo` and `20240101` stay plain names. The deploy adds a second opinion:
    a name once seen with other content is not content-addressed, whatever it looks like.
    """
    if any(path.startswith(d) or f"/{d}" in path for d in IMMUTABLE_DIRS):
        return True
    name = path.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    tokens = [t for t in re.split(r"[.\-_~]", stem) if 8 <= len(t) <= 64]
    tail = stem[-8:]
    if len(stem) > 8 and stem[-9] in "-." and re.fullmatch(r"[A-Za-z0-9_-]{8}", tail):
        if re.search(r"[-_]", tail):
            parts = re.split(r"[-_]", tail)
            mixed_case = re.search(r"[a-z]", tail) and re.search(r"[A-Z]", tail)
            if mixed_case and not any(re.fullmatch(r"[A-Za-z][a-z]{3,}", p) for p in parts):
                return True
        else:
            tokens.append(tail)
    return any(_looks_random(t) for t in tokens)


def _looks_random(token: str) -> bool:
    if not token.isascii() or not token.isalnum():
        return False
    if re.fullmatch(r"[0-9a-f]+", token):
        return bool(re.search(r"[0-9]", token)) and bool(re.search(r"[a-f]", token))
    classes = ["d" if c.isdigit() else "a" for c in token]
    transitions = sum(1 for a, b in zip(classes, classes[1:], strict=False) if a != b)
    return transitions >= 2 or re.search(r"[a-z][A-Z]", token) is not None


def cache_control_for(path: str, rules: Iterable[tuple[str, str]] = (), *, hashed: bool | None = None) -> str:
    """The caller's first matching (glob, value) rule, else immutable for hashed names, else no-cache."""
    for pattern, value in rules:
        if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern):
            return value
    return IMMUTABLE if (is_content_hashed(path) if hashed is None else hashed) else REVALIDATE


def plan_deploy(
    files: Iterable[LocalFile],
    previous: Mapping[str, Mapping[str, object]] | None = None,
    rules: Iterable[tuple[str, str]] = (),
    *,
    live_etags: Mapping[str, str] | None = None,
    history: Iterable[Mapping[str, Mapping[str, object]]] = (),
) -> DeployPlan:
    """What to upload and what to skip.

    `previous` is the live release's files (path -> manifest entry); `live_etags` what a listing
    found at each path (path -> ETag), to repair drift: a file the manifest calls unchanged is
    uploaded again when the object is missing or holds something else. `history` is the files of
    earlier releases: a name seen there with other content is not taken as content-addressed.
    """
    previous = previous or {}
    rules = tuple(rules)
    seen: dict[str, set[object]] = {}
    for files_of in (previous, *history):
        for path, entry in files_of.items():
            seen.setdefault(path, set()).add(entry.get("md5") if isinstance(entry, Mapping) else None)
    new_assets, stable, skipped, repaired = [], [], [], []
    manifest: dict[str, dict[str, object]] = {}
    for f in sorted(files, key=lambda f: f.path):
        hashed = is_content_hashed(f.path) and seen.get(f.path, {f.md5}) <= {f.md5}
        upload = Upload(
            f.path, f.size, f.md5, content_type_for(f.path), cache_control_for(f.path, rules, hashed=hashed), hashed
        )
        entry = upload.manifest_entry()
        before = previous.get(f.path)
        same = isinstance(before, Mapping) and all(before.get(k) == entry[k] for k in MANIFEST_FIELDS)
        if same and live_etags is not None and not live_matches(before, live_etags.get(f.path)):
            same = False
            repaired.append(f.path)
        if same:
            assert isinstance(before, Mapping)
            manifest[f.path] = {**entry, **{k: before[k] for k in ("etag", "release") if k in before}}
            skipped.append(upload)
            continue
        live_etag = live_etags.get(f.path) if live_etags is not None else None
        if before is None and hashed and live_etag and live_etag.strip('"').upper() == f.md5.upper():
            manifest[f.path] = {**entry, "etag": live_etag.strip('"')}  # left by an attempt that did not finish
            skipped.append(upload)
            continue
        manifest[f.path] = entry
        live = live_etag is not None if live_etags is not None else before is not None
        (stable if live or not hashed else new_assets).append(upload)
    # Plain assets first, then pages, the root index last of all: it is what a visitor loads first.
    stable.sort(key=lambda u: (u.is_entry, u.path == "index.html", u.path.count("/") == 0, u.path))
    return DeployPlan(tuple(new_assets), tuple(stable), tuple(skipped), manifest, tuple(repaired))


def live_matches(entry: Mapping[str, object], live_etag: str | None) -> bool:
    """Whether the object at a path is what the manifest recorded there."""
    if live_etag is None:
        return False
    recorded = str(entry.get("etag") or entry.get("md5") or "")
    return live_etag.strip('"').upper() == recorded.strip('"').upper()


class OutputRefused(ValueError):
    """The output folder cannot be deployed as it is; the message names the path and why."""


META_SEGMENT = ".fcbuild"  # fcbuild's own folder under a site's prefix: never published, at any depth


def scan_tree(
    root: str,
    *,
    owner_uid: int | None = None,
    max_files: int | None = None,
    max_bytes: int | None = None,
    max_path_bytes: int = 1023,
) -> list[LocalFile]:
    """Every regular file under `root` with its size and MD5, read once, depth first without
    recursion (a 5,000-deep tree is refused by its path length, not by Python's stack).

    Refused (OutputRefused, naming the path): a link (never followed); with `owner_uid`, a file that
    user does not own (a hard link to a file of the system's); a `.fcbuild` folder or file at any
    depth; a name that is not UTF-8 (it cannot be an OSS key); a path longer than `max_path_bytes`;
    more than `max_files` files or `max_bytes` bytes (counted before anything is hashed past them).
    """
    found: list[LocalFile] = []
    total = 0
    todo = [""]
    while todo:
        rel_dir = todo.pop()
        folder = os.path.join(root, rel_dir) if rel_dir else root
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            try:
                size = len(rel.encode("utf-8"))
            except UnicodeEncodeError:
                raise OutputRefused(f"{shown}: a name that is not UTF-8 (it cannot name an OSS object)") from None
            if size > max_path_bytes:
                raise OutputRefused(f"{shown[:120]}...: a path of {size} bytes (at most {max_path_bytes} here)")
            if entry.name == META_SEGMENT:
                raise OutputRefused(f"{rel}: a {META_SEGMENT} folder or file, which fcbuild keeps for itself")
            if entry.is_symlink():
                kind = "folder" if entry.is_dir() else "file"
                raise OutputRefused(f"{rel}: a link to a {kind} (links are not deployed)")
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(rel)
                continue
            total += entry.stat(follow_symlinks=False).st_size
            if max_files is not None and len(found) >= max_files:
                raise OutputRefused(f"more than {max_files} files (FCBUILD_MAX_FILES)")
            if max_bytes is not None and total > max_bytes:
                raise OutputRefused(f"more than {max_bytes // (1024 * 1024)} MB (FCBUILD_MAX_OUTPUT_MB)")
            found.append(_scan_file(entry.path, rel, owner_uid))
        todo.extend(reversed(subdirs))
    return found


def _scan_file(full: str, rel: str, owner_uid: int | None) -> LocalFile:
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise OutputRefused(f"{rel}: not a regular file (links are not deployed)") from None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OutputRefused(f"{rel}: not a regular file (links are not deployed)")
        if owner_uid is not None and st.st_uid != owner_uid:
            raise OutputRefused(
                f"{rel}: not written by the build (owned by uid {st.st_uid}, a hard link to another file?)"
            )
        md5 = hashlib.md5()
        while chunk := f.read(1 << 20):
            md5.update(chunk)
    return LocalFile(rel, st.st_size, md5.hexdigest())


@dataclass(frozen=True)
class Retention:
    delete: tuple[str, ...]  # paths to remove: only in releases that fell out of the window
    releases: tuple[dict, ...]  # the history to record, newest first


def plan_retention(
    release_id: str, deployed_at: str, paths: Iterable[str], previous: Iterable[Mapping], keep: int
) -> Retention:
    """Which objects of earlier deploys to delete now.

    `previous` is the recorded history, newest first: each release names the paths it deployed.
    The new release and the `keep` before it stay whole, so a page opened before a deploy keeps
    finding its chunks; a path is deleted once no release in that window has it. Paths no release
    recorded are never touched (they are not ours).
    """
    current = {"id": release_id, "deployedAt": deployed_at, "paths": sorted(set(paths))}
    history = [r for r in previous if isinstance(r, Mapping) and isinstance(r.get("paths"), list)]
    window, expired = [current, *history[:keep]], history[keep:]
    kept = {p for r in window for p in r["paths"]}
    delete = sorted({p for r in expired for p in r["paths"]} - kept)
    return Retention(tuple(delete), tuple(window))
