"""Deciding what a deploy uploads: content types, cache policy, and the diff against the last deploy.

Pure functions over plain values, except `scan_tree`, which reads the output folder once.
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


@dataclass(frozen=True)
class Upload:
    path: str  # relative to the output folder and to the target prefix
    size: int
    md5: str
    content_type: str
    cache_control: str

    def manifest_entry(self) -> dict[str, object]:
        return {
            "size": self.size,
            "md5": self.md5,
            "content_type": self.content_type,
            "cache_control": self.cache_control,
        }


@dataclass(frozen=True)
class DeployPlan:
    assets: tuple[Upload, ...]  # everything but entry HTML: uploaded first
    entries: tuple[Upload, ...]  # HTML: uploaded last, so no live page names a missing asset
    skipped: tuple[Upload, ...]  # unchanged since the previous deploy
    manifest: dict[str, dict[str, object]]  # the new deploy's files

    @property
    def uploads(self) -> tuple[Upload, ...]:
        return self.assets + self.entries


def content_type_for(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    _, ext = os.path.splitext(name)
    return CONTENT_TYPES.get(ext, DEFAULT_CONTENT_TYPE)


def is_content_hashed(path: str) -> bool:
    """True for names a bundler made unique by content: `index-BPvgi06w.js`, `main.3f2a9c1b.css`,
    `index-Ab-1x_Yz.js` (Rollup's 8-character hash may hold `-` and `_`).

    Wrong answers differ in cost: a hashed name taken for a plain one is only revalidated,
    a plain name taken for a hashed one is cached for a year. So a token must look random:
    it switches between letters and digits at least twice, or has a capital after a small
    letter. `screenshot2024`, `datepicker`, `Banner2024`, `logo-v2-final` stay plain names.
    """
    if any(path.startswith(d) or f"/{d}" in path for d in IMMUTABLE_DIRS):
        return True
    name = path.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    tokens = [t for t in re.split(r"[.\-_~]", stem) if 8 <= len(t) <= 64]
    tail = stem[-8:]
    if len(stem) > 8 and stem[-9] in "-." and re.fullmatch(r"[A-Za-z0-9_-]{8}", tail):
        if re.search(r"[-_]", tail):
            if re.search(r"[a-z]", tail) and re.search(r"[A-Z]", tail) and re.search(r"[0-9]", tail):
                return True
        else:
            tokens.append(tail)
    return any(_looks_random(t) for t in tokens)


def _looks_random(token: str) -> bool:
    if not token.isascii() or not token.isalnum():
        return False
    classes = ["d" if c.isdigit() else "a" for c in token]
    transitions = sum(1 for a, b in zip(classes, classes[1:], strict=False) if a != b)
    return transitions >= 2 or re.search(r"[a-z][A-Z]", token) is not None


def cache_control_for(path: str, rules: Iterable[tuple[str, str]] = ()) -> str:
    """The caller's first matching (glob, value) rule, else immutable for hashed names, else no-cache."""
    for pattern, value in rules:
        if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern):
            return value
    return IMMUTABLE if is_content_hashed(path) else REVALIDATE


def plan_deploy(
    files: Iterable[LocalFile],
    previous: Mapping[str, Mapping[str, object]] | None = None,
    rules: Iterable[tuple[str, str]] = (),
) -> DeployPlan:
    """What to upload and what to skip, given the previous deploy's manifest (path -> entry)."""
    previous = previous or {}
    rules = tuple(rules)
    assets, entries, skipped = [], [], []
    manifest: dict[str, dict[str, object]] = {}
    for f in sorted(files, key=lambda f: f.path):
        upload = Upload(f.path, f.size, f.md5, content_type_for(f.path), cache_control_for(f.path, rules))
        manifest[f.path] = upload.manifest_entry()
        if previous.get(f.path) == manifest[f.path]:
            skipped.append(upload)
        elif f.path.lower().endswith(ENTRY_SUFFIXES):
            entries.append(upload)
        else:
            assets.append(upload)
    # The root index last of all: it is what a visitor loads first.
    entries.sort(key=lambda u: (u.path == "index.html", u.path.count("/") == 0, u.path))
    return DeployPlan(tuple(assets), tuple(entries), tuple(skipped), manifest)


def scan_tree(root: str, *, owner_uid: int | None = None) -> list[LocalFile]:
    """Every regular file under `root` with its size and MD5. Symlinks are refused, not followed;
    with `owner_uid`, so is a file that user does not own (a hard link to a file of the system's)."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            try:
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                raise ValueError(f"{rel}: not a regular file (links are not deployed)") from None
            with open(fd, "rb") as f:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise ValueError(f"{rel}: not a regular file (links are not deployed)")
                if owner_uid is not None and st.st_uid != owner_uid:
                    raise ValueError(
                        f"{rel}: not written by the build (owned by uid {st.st_uid}, a hard link to another file?)"
                    )
                md5 = hashlib.md5()
                while chunk := f.read(1 << 20):
                    md5.update(chunk)
            found.append(LocalFile(rel, st.st_size, md5.hexdigest()))
        for d in dirs:
            if os.path.islink(os.path.join(folder, d)):
                rel = os.path.relpath(os.path.join(folder, d), root)
                raise ValueError(f"{rel}: a link to a folder (links are not deployed)")
    return found


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
