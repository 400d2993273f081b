"""Package-manager releases (pnpm, yarn) that builds run through corepack, kept so that no build
can change what a later build runs.

The runtime alone installs a release (`corepack install -g name@spec`: a download, nothing of the
release runs), into a folder that builds can read but not write when they run as their own user.
Right after the install the release's files are hashed, and the hash is kept in this process's
memory; before every build that uses the release they are hashed again, and a release whose
files changed (a build running as the runtime's own user could have edited them) is deleted and
installed afresh. Builds run `corepack name@<exact version>` with this folder read-only.

Releases are kept by where they came from: each registry (and whether npm's signatures were
checked) has a corepack home of its own, so a release one site fetched from a registry it named
never runs for a site that named another, or none. A release is also kept with the integrity it
was installed against: a project that pins `name@x.y.z+sha512.<hash>` runs a release installed
against that hash (corepack checks it on download), never one fetched without it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any

from errors import BuildFailed
from settings import allowed_env
from toolchain import PackageManager, registry_env

INSTALL_TIMEOUT_S = 300
SIGNATURE_HINT = (
    "corepack found no npm signature on this package manager's release, which is what a registry mirror "
    "serves: name the mirror in build.registry (or the function's FCBUILD_NPM_REGISTRY) so that corepack "
    "fetches from it without checking npm's signature keys"
)


def tree_digest(root: str) -> str:
    """SHA-256 over every path, kind, mode and content under `root` (links by their target)."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            digest.update(f"{rel}\0{st.st_mode:o}\0".encode())
            if os.path.islink(path):
                digest.update(os.readlink(path).encode())
            else:
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
            digest.update(b"\0")
        for d in dirs:
            st = os.lstat(os.path.join(folder, d))
            digest.update(f"{os.path.relpath(os.path.join(folder, d), root)}/\0{st.st_mode:o}\0".encode())
    return digest.hexdigest()


def origin_home(root: str, registry: str, signatures: bool) -> str:
    """The corepack home of releases from `registry` ("" is the default one), checked or not."""
    origin = f"{registry.rstrip('/')}\n{'signed' if signatures else 'unsigned'}"
    return os.path.join(root, hashlib.sha256(origin.encode()).hexdigest()[:16])


class PackageManagerReleases:
    """corepack's caches (a COREPACK_HOME per origin under `root`), owned by the runtime. Lives on
    the Instance."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.home = origin_home(root, "", True)  # where ensure() last looked (for tests and reports)
        self._lock = threading.Lock()
        # (home, name, version) -> (digest at install, the integrity it was installed against)
        self._digests: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._resolved: dict[tuple[str, str], str] = {}  # (home, a spec such as pnpm@9) -> its version

    def release_dir(self, name: str, version: str, home: str = "") -> str:
        return os.path.join(home or self.home, "v1", name, version)

    def ensure(
        self,
        pm: PackageManager,
        node_bin: str,
        launch_env: Mapping[str, str],
        registry: str,
        log: Any,
        signatures: bool = False,
    ) -> tuple[PackageManager, dict[str, Any]]:
        """The release `pm` needs, installed and verified; `pm` with its exact version, and a report
        whose "home" is the COREPACK_HOME the build must use (the one of `registry`)."""
        started = time.monotonic()
        home = origin_home(self.root, registry, signatures)
        integrity = pm.release.partition("+")[2] if pm.version else ""
        with self._lock:
            self.home = home
            report: dict[str, Any] = {}
            version = pm.version or self._resolved.get((home, pm.release), "")
            if version and self._verified(home, pm.name, version, integrity, report, log):
                report["seconds"] = round(time.monotonic() - started, 3)
                report["home"] = home
                return pm.resolved(version), report
            version = self._install(pm, node_bin, launch_env, registry, log, signatures, home)
            self._resolved[(home, pm.release)] = version
            folder = self.release_dir(pm.name, version, home)
            _seal(folder)
            self._digests[(home, pm.name, version)] = (tree_digest(folder), integrity)
            report["installed"] = f"{pm.name}@{version}"
            report["seconds"] = round(time.monotonic() - started, 3)
            report["home"] = home
            return pm.resolved(version), report

    def _verified(self, home: str, name: str, version: str, integrity: str, report: dict[str, Any], log: Any) -> bool:
        folder = self.release_dir(name, version, home)
        known, installed_against = self._digests.get((home, name, version), ("", ""))
        if not os.path.isdir(folder):
            return False
        if known and tree_digest(folder) == known and (not integrity or integrity == installed_against):
            report["verified"] = f"{name}@{version}"
            return True
        if not known:
            why = "this runtime did not install it"
        elif integrity and integrity != installed_against:
            why = "it was not installed against the integrity the project pins"
        else:
            why = "its files changed since it was installed"
        log.warning("package manager %s@%s in %s: %s; installing it afresh", name, version, folder, why)
        report["replaced"] = f"{name}@{version}: {why}"
        shutil.rmtree(folder, ignore_errors=True)
        self._digests.pop((home, name, version), None)
        return False

    def _install(
        self,
        pm: PackageManager,
        node_bin: str,
        launch_env: Mapping[str, str],
        registry: str,
        log: Any,
        signatures: bool,
        home: str,
    ) -> str:
        spec = pm.release or f"{pm.name}@{pm.version}"
        os.makedirs(home, exist_ok=True)
        for folder in (self.root, home):
            os.chmod(folder, 0o755)
        env = allowed_env(launch_env)
        env.update(
            {
                "PATH": f"{node_bin}:{launch_env.get('PATH') or '/usr/local/bin:/usr/bin:/bin'}",
                "HOME": os.path.join(home, ".home"),
                "COREPACK_HOME": home,
                "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0",
                "COREPACK_ENABLE_AUTO_PIN": "0",
            }
        )
        if registry:
            env.update(registry_env(registry, signatures=signatures))
        elif not signatures:
            env["COREPACK_INTEGRITY_KEYS"] = "0"
        log.info("installing package manager %s with corepack%s", spec, "" if signatures else " (no signature check)")
        try:
            done = subprocess.run(
                ["corepack", "install", "-g", spec],
                env=env,
                cwd=home,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=INSTALL_TIMEOUT_S,
            )
        except FileNotFoundError:
            raise BuildFailed(f"corepack is not in {node_bin} nor on PATH: it runs {pm.name}") from None
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"corepack install {spec} took over {INSTALL_TIMEOUT_S}s") from None
        text = (done.stdout + done.stderr).decode("utf-8", "replace")
        found = re.search(rf"{re.escape(pm.name)}@(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]*[0-9A-Za-z])?)", text)
        if done.returncode != 0:
            lines = [line for line in text.splitlines() if line.strip()][:12]
            hint = f"\n{SIGNATURE_HINT}" if "signature" in text.lower() else ""
            raise BuildFailed(
                f"corepack could not install {spec} (exit {done.returncode}):\n" + "\n".join(lines) + hint
            )
        version = found[1] if found else pm.version
        if not version or not os.path.isdir(self.release_dir(pm.name, version, home)):
            raise BuildFailed(f"corepack install {spec} left no release to run:\n{text[:2000]}")
        return version


def _seal(folder: str) -> None:
    """Readable and runnable by builds, writable only by the runtime's user."""
    for path, _dirs, files in os.walk(folder):
        os.chmod(path, 0o755)
        for name in files:
            full = os.path.join(path, name)
            if not os.path.islink(full):
                mode = os.lstat(full).st_mode
                os.chmod(full, 0o755 if mode & 0o111 else 0o644)
