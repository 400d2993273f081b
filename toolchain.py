"""Which Node.js, which package manager, which commands, which environment: pure decisions.

Nothing here runs a process or touches the network; `build_pipeline` runs what these plan.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from errors import BuildFailed, InvalidSource, NotAvailable
from frameworks import Framework, build_script
from settings import allowed_env

Version = tuple[int, int, int]
LOCKFILES = (
    ("pnpm-lock.yaml", "pnpm"),
    ("yarn.lock", "yarn"),
    ("package-lock.json", "npm"),
    ("npm-shrinkwrap.json", "npm"),
)
BUN_LOCKFILES = frozenset(("bun.lock", "bun.lockb"))
OUTPUT_CANDIDATES = ("dist", "build", "out", ".output/public", "_site")


@dataclass(frozen=True)
class PackageManager:
    name: str  # npm | pnpm | yarn
    version: str = ""  # from package.json "packageManager", else the one that comes with Node / corepack's default
    lockfile: str = ""
    berry: bool = False  # yarn 2+
    release: str = ""  # what corepack installs when version is unset or unresolved: a pin or a major
    note: str = ""  # what the user should know of the choice (a lockfile fcbuild cannot use)
    yarn_path: str = ""  # yarn berry's committed release (.yarnrc.yml yarnPath), relative to the project

    def resolved(self, version: str) -> PackageManager:
        return dataclasses.replace(self, version=version)

    @property
    def via_corepack(self) -> bool:
        """pnpm and yarn always; npm when pinned, or when the npm that comes with Node cannot read the lockfile."""
        return not self.yarn_path and (self.name in ("pnpm", "yarn") or bool(self.release))

    def argv(self, *args: str) -> tuple[str, ...]:
        """A command of this package manager. pnpm and yarn run through corepack, which honours the
        `packageManager` pin (or picks its default version) without a global install; a yarn release
        the project commits (yarnPath) runs as it is, with nothing downloaded."""
        if self.yarn_path:
            return ("node", self.yarn_path, *args)
        if self.via_corepack:
            tool = f"{self.name}@{self.version}" if self.version else self.name
            return ("corepack", tool, *args)
        return ("npm", *args)

    def install_argv(self) -> tuple[str, ...]:
        if self.name == "npm":
            return self.argv("ci") if self.lockfile else self.argv("install")
        if self.name == "pnpm":
            return self.argv("install", "--frozen-lockfile") if self.lockfile else self.argv("install")
        if self.berry:
            return self.argv("install", "--immutable") if self.lockfile else self.argv("install")
        return self.argv("install", "--frozen-lockfile") if self.lockfile else self.argv("install")

    def describe(self) -> dict[str, str]:
        doc = {"name": self.name, "version": self.version or "default", "lockfile": self.lockfile or "none"}
        if self.yarn_path:
            doc["yarnPath"] = self.yarn_path
        return {**doc, "note": self.note} if self.note else doc


def read_package_json(project: str) -> dict:
    path = os.path.join(project, "package.json")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise InvalidSource("source: no package.json at the project root") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSource(f"source: package.json is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidSource("source: package.json is not a JSON object")
    return doc


YARN_PATH_RE = re.compile(r"""^yarnPath:\s*["']?([^"'#\r\n]+?)["']?\s*(?:#.*)?$""", re.M)


def committed_yarn(pm: PackageManager, yarnrc: str, project: str) -> PackageManager:
    """yarn berry with `yarnPath` in .yarnrc.yml naming a release file inside the project: that release
    runs (what yarn itself would do after corepack had downloaded another one to hand over to it)."""
    m = YARN_PATH_RE.search(yarnrc)
    if pm.name != "yarn" or not pm.berry or not m:
        return pm
    rel = m[1].strip()
    full = os.path.realpath(os.path.join(project, rel))
    if not full.startswith(os.path.realpath(project) + os.sep) or not os.path.isfile(full):
        return pm
    version = re.search(r"yarn-(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)\.c?js$", rel)
    return dataclasses.replace(pm, yarn_path=rel, release="", version=version[1] if version else pm.version)


def detect_package_manager(
    files: Iterable[str], package: Mapping, yarn_lock_head: str = "", pnpm_lock_head: str = ""
) -> PackageManager:
    """From the `packageManager` pin, else the lockfile; no lockfile: npm install. An unpinned
    pnpm or yarn gets the major that writes its lockfile (corepack would take the newest)."""
    names = set(files)
    pinned_name, pinned_version, release = "", "", ""
    pin = package.get("packageManager")
    if isinstance(pin, str) and "@" in pin:
        pinned_name, _, full = pin.partition("@")
        pinned_version, _, integrity = full.partition("+")  # corepack's "+sha512.<hash>" is checked on install
        if (
            pinned_name not in ("npm", "pnpm", "yarn")
            or not re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?", pinned_version)
            or (integrity and not re.fullmatch(r"sha(1|224|256|384|512)\.[0-9a-f]{40,128}", integrity))
        ):
            raise InvalidSource(f"source: package.json packageManager {pin!r} is not <npm|pnpm|yarn>@<x.y.z>")
        release = f"{pinned_name}@{full}"
    lock = next(((f, pm) for f, pm in LOCKFILES if f in names), ("", ""))
    name = pinned_name or lock[1] or "npm"
    lockfile = lock[0] if lock[1] == name else ""
    berry = False
    if name == "yarn":
        if pinned_version:
            berry = not pinned_version.startswith("1.")
        else:
            berry = "__metadata:" in yarn_lock_head or ".yarnrc.yml" in names
    if name in ("pnpm", "yarn") and not release:
        release = f"{name}@{_major_for_lockfile(name, berry, yarn_lock_head, pnpm_lock_head)}"
    note = ""
    bun = sorted(names & BUN_LOCKFILES)
    if bun and not lockfile:
        note = f"bun is not supported ({bun[0]} found): installing with {name} without a lockfile"
    return PackageManager(name, pinned_version, lockfile, berry, release, note)


# lockfileVersion -> the pnpm major that writes it; yarn.lock's __metadata version -> yarn's major.
PNPM_LOCKFILE_MAJORS = {"9": "9", "6": "8", "5.4": "7", "5.3": "6", "5.2": "5"}
YARN_METADATA_MAJORS = {"8": "4", "7": "3", "6": "3", "5": "2", "4": "2"}


def _major_for_lockfile(name: str, berry: bool, yarn_head: str, pnpm_head: str) -> str:
    if name == "pnpm":
        m = re.search(r"^lockfileVersion:\s*'?\"?([\d.]+)", pnpm_head, re.M)
        version = m[1] if m else ""
        return PNPM_LOCKFILE_MAJORS.get(version) or PNPM_LOCKFILE_MAJORS.get(version.split(".")[0], "9")
    if not berry:
        return "1"
    m = re.search(r"^\s+version:\s*(\d+)", yarn_head.partition("__metadata:")[2], re.M)
    return YARN_METADATA_MAJORS.get(m[1] if m else "", "4")


# package-lock.json's lockfileVersion -> the oldest npm major that reads it (version 2 keeps version
# 1's section for npm 6; version 3 is npm 7's format alone).
NPM_LOCKFILE_MAJORS = {1: 5, 2: 6, 3: 7}
# The newest npm major each Node line can run (npm's engines.node), newest first.
NPM_MAJOR_FOR_NODE = (((18, 17, 0), 10), ((14, 17, 0), 9), ((12, 13, 0), 8), ((10, 0, 0), 7))


def plan_npm(pm: PackageManager, lock_head: str, node: Version, bundled: str) -> PackageManager:
    """The npm that runs: the one that comes with the chosen Node when it reads the lockfile (named
    by its exact version), else the newest npm that Node can run, through corepack."""
    if pm.name != "npm" or pm.version:  # a packageManager pin wins
        return pm
    m = re.search(r'"lockfileVersion"\s*:\s*(\d+)', lock_head) if pm.lockfile else None
    lock_version = int(m[1]) if m else 0
    need = NPM_LOCKFILE_MAJORS.get(lock_version, 7 if lock_version > 3 else 0)
    have = parse_version(bundled)
    if have and have[0] >= need:
        return pm.resolved(bundled)
    runnable = next((major for floor, major in NPM_MAJOR_FOR_NODE if node >= floor), 0)
    if runnable < need:
        raise InvalidSource(
            f"source: {pm.lockfile} lockfileVersion {lock_version} needs npm {need} or newer, which Node.js "
            f"v{'.'.join(map(str, node))} cannot run: ask for a newer build.node_version"
        )
    return dataclasses.replace(pm, version="", release=f"npm@{runnable}")


def build_argv(pm: PackageManager, package: Mapping, framework: Framework | None = None) -> tuple[str, ...]:
    """`<package manager> run <script>`: the framework's build script (uni-app's `build:h5`,
    VitePress's `docs:build`...), else `build`."""
    script = build_script(framework, package)
    if not script:
        wanted = ", ".join(dict.fromkeys([*(framework.scripts if framework else ()), "build"]))
        what = f" (looked for {wanted}, as {framework.name} names them)" if framework else ""
        raise InvalidSource(f"source: package.json has no build script{what}; give build.command in the request")
    return pm.argv("run", script)


# --- Node.js versions -------------------------------------------------------------------------


def parse_version(text: str) -> Version | None:
    m = re.match(r"^\s*v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def node_requirement(project_files: Mapping[str, str], package: Mapping, requested: str | None) -> tuple[str, str]:
    """(range, where it came from): the request, .nvmrc, .node-version, engines.node, or ("", "")."""
    if requested:
        return requested, "request"
    for name in (".nvmrc", ".node-version"):
        text = project_files.get(name, "").strip().splitlines()
        if text and text[0].strip():
            return text[0].strip(), name
    engines = package.get("engines")
    if isinstance(engines, dict) and isinstance(engines.get("node"), str) and engines["node"].strip():
        return engines["node"].strip(), "package.json engines.node"
    return "", ""


def satisfies(version: Version, spec: str) -> bool:
    """npm-style ranges: `20`, `20.x`, `^18.17`, `~20.1.0`, `>=18 <21`, `18 || 20`, `16 - 20`, `*`, `lts/*`."""
    spec = spec.strip().lstrip("v")
    if spec in ("", "*", "x", "latest", "node", "current", "stable"):
        return True
    if spec.startswith("lts"):  # any long-term-support line: an even major from 4 on
        return version[0] >= 4 and version[0] % 2 == 0
    return any(_satisfies_all(version, alt.strip()) for alt in spec.split("||"))


def _satisfies_all(version: Version, spec: str) -> bool:
    hyphen = re.match(r"^(\S+)\s+-\s+(\S+)$", spec)
    if hyphen:
        low, high = _partial(hyphen[1]), _partial(hyphen[2])
        return version >= _floor(low) and _below_upper(version, high)
    spec = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", spec)
    return all(_satisfies_one(version, part) for part in spec.split())


def _partial(text: str) -> list[int | None]:
    text = text.lstrip("v=")
    out: list[int | None] = []
    for piece in (text.split(".") + ["x", "x"])[:3]:
        piece = re.sub(r"[-+].*$", "", piece)
        out.append(int(piece) if piece.isdigit() else None)
    return out


def _floor(p: list[int | None]) -> Version:
    return (p[0] or 0, p[1] or 0, p[2] or 0)


def _below_upper(v: Version, p: list[int | None]) -> bool:
    if p[0] is None:
        return True
    if p[1] is None:
        return v[0] <= p[0]
    if p[2] is None:
        return v[:2] <= (p[0], p[1])
    return v <= (p[0], p[1], p[2])


def _satisfies_one(v: Version, part: str) -> bool:
    m = re.match(r"^(>=|<=|>|<|=|\^|~)?(.+)$", part)
    if not m:
        return False
    op, p = m[1] or "", _partial(m[2])
    if p[0] is None:
        return True
    floor = _floor(p)
    if op == ">=":
        return v >= floor
    if op == ">":
        return not _below_upper(v, p)
    if op == "<":
        return v < floor
    if op == "<=":
        return _below_upper(v, p)
    if op == "^":
        if p[0] != 0:
            return floor <= v < (p[0] + 1, 0, 0)
        if p[1] is None or p[1] != 0:
            return floor <= v < (0, (p[1] or 0) + 1, 0)
        return floor <= v < (0, 0, (p[2] or 0) + 1)
    if op == "~":
        if p[1] is None:
            return floor <= v < (p[0] + 1, 0, 0)
        return floor <= v < (p[0], p[1] + 1, 0)
    # "", "=": x-ranges match every version the given parts allow
    return all(want is None or want == have for want, have in zip(p, v, strict=False))


@dataclass(frozen=True)
class NodeInstall:
    version: Version
    bin_dir: str
    on_path: bool = False

    @property
    def version_text(self) -> str:
        return "v" + ".".join(map(str, self.version))


def choose_node(installs: Iterable[NodeInstall], spec: str, source: str) -> NodeInstall:
    """The newest install that satisfies `spec`; with no spec, the PATH's node, else the newest."""
    installs = list(installs)
    if not installs:
        raise NotAvailable("no Node.js found: set FCBUILD_NODE_PATHS or put node on PATH")
    if not spec:
        return next((i for i in installs if i.on_path), max(installs, key=lambda i: i.version))
    matching = [i for i in installs if satisfies(i.version, spec)]
    if not matching:
        have = ", ".join(i.version_text for i in installs)
        raise NotAvailable(f"no Node.js satisfies {spec!r} (from {source}); this instance has {have}")
    return max(matching, key=lambda i: i.version)


# --- output and environment -------------------------------------------------------------------


def find_output_dir(
    project: str, requested: str | None, framework: Framework | None = None, public_written: bool = False
) -> str:
    """The build output folder: the requested one, else the framework's, else the first non-empty
    usual one; `public` only when the build wrote its index.html (Hexo, Gatsby), not when it is the
    source folder of static files that Vite or create-react-app copy from."""
    if requested:
        candidates = [requested]
    else:
        table = [framework.output, *framework.other_outputs] if framework else []
        candidates = list(dict.fromkeys([*table, *OUTPUT_CANDIDATES]))
        if public_written:
            candidates.append("public")
    for rel in candidates:
        path = os.path.join(project, rel)
        if os.path.isdir(path) and not os.path.islink(path) and any(os.scandir(path)):
            return _descend_to_site(path)
    looked = ", ".join(candidates)
    there = (
        sorted(e.name + "/" for e in os.scandir(project) if e.is_dir() and e.name not in ("node_modules", ".git"))
        if os.path.isdir(project)
        else []
    )
    raise BuildFailed(
        f"the build left no output: {looked} missing or empty"
        + ("" if requested else "; set build.output_dir to where your build writes")
        + (f" (the folders there: {', '.join(there)})" if there else "")
    )


def _descend_to_site(path: str) -> str:
    """Down to the folder that holds the site's index.html: a lone folder is followed (dist/<project>),
    and so is the one folder beside other files that holds an index.html (Angular 17 and later write
    dist/<project>/browser/index.html beside 3rdpartylicenses.txt and prerendered-routes.json)."""
    for _ in range(3):
        if os.path.exists(os.path.join(path, "index.html")):
            return path
        entries = list(os.scandir(path))
        folders = [e for e in entries if e.is_dir(follow_symlinks=False)]
        with_index = [e for e in folders if os.path.isfile(os.path.join(e.path, "index.html"))]
        if len(entries) == 1 and folders:
            path = folders[0].path
        elif len(with_index) == 1:
            path = with_index[0].path
        else:
            break
    return path


@dataclass(frozen=True)
class BuildPaths:
    """Where one build lives. `workspace` holds the rest; everything but `corepack_home` belongs to
    the build's user for the build's duration. `caches` is the site's own package-manager caches."""

    workspace: str
    home: str
    tmp: str
    caches: str
    corepack_home: str  # package-manager releases: written by the runtime only, read-only to builds


def child_env(
    launch_env: Mapping[str, str],
    node_bin: str,
    paths: BuildPaths,
    *,
    package_manager: str = "npm",
    registry: str = "",
    extra: Mapping[str, str] | None = None,
    user: str = "",
    signatures: bool = True,
) -> dict[str, str]:
    """The environment of install and build: an allowlist of the runtime's own environment (so
    no ALIBABA_CLOUD_* credential and nothing FC-internal), the chosen Node first on PATH, CI=true,
    an empty HOME and TMPDIR of the build's own, the site's own caches, the registry, then the
    request's own `env`. No git command finds a repository above the workspace."""
    env = allowed_env(launch_env)
    base_path = launch_env.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    env["PATH"] = f"{node_bin}:{base_path}"
    home = paths.home
    env.update(
        {
            "HOME": home,
            "TMPDIR": paths.tmp,
            "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "XDG_CACHE_HOME": os.path.join(home, ".cache"),
            "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
            "XDG_STATE_HOME": os.path.join(home, ".local", "state"),
            "GIT_CEILING_DIRECTORIES": paths.workspace,
            "CI": "true",
            "npm_config_cache": os.path.join(paths.caches, "npm"),
            "COREPACK_HOME": paths.corepack_home,
            "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0",
            "COREPACK_ENABLE_STRICT": "0",
            "COREPACK_ENABLE_AUTO_PIN": "0",
            "npm_config_audit": "false",
            "npm_config_fund": "false",
            "npm_config_update_notifier": "false",
        }
    )
    if user:
        env["USER"] = env["LOGNAME"] = user
    if package_manager == "pnpm":  # npm warns about settings it does not know
        # Both spellings: pnpm 10 and earlier read npm_config_*, pnpm 11 and later pnpm_config_* only.
        for prefix in ("npm_config_", "pnpm_config_"):
            env[prefix + "store_dir"] = os.path.join(paths.caches, "pnpm-store")
            env[prefix + "cache_dir"] = os.path.join(paths.caches, "pnpm-cache")
    elif package_manager == "yarn":
        env["YARN_CACHE_FOLDER"] = os.path.join(paths.caches, "yarn")
        env["YARN_GLOBAL_FOLDER"] = os.path.join(paths.caches, "yarn-global")
    if registry:
        env.update(registry_env(registry, signatures=signatures))
    elif not signatures:  # FCBUILD_COREPACK_SIGNATURES=0 on its own: corepack's check off for the default registry
        env["COREPACK_INTEGRITY_KEYS"] = "0"
    env["SHELL"] = "/bin/sh"
    env.update(extra or {})
    return env


def registry_env(registry: str, *, signatures: bool = False) -> dict[str, str]:
    """The variables that point npm, pnpm, yarn and corepack at `registry`. `signatures`: corepack
    keeps checking npm's signatures of package-manager releases (the official registry carries
    them; a mirror does not, so for a mirror the check is off)."""
    env = {
        "npm_config_registry": registry,
        "pnpm_config_registry": registry,  # pnpm 11 reads its own spelling only
        "YARN_NPM_REGISTRY_SERVER": registry,
        "COREPACK_NPM_REGISTRY": registry.rstrip("/"),
    }
    if not signatures:
        env["COREPACK_INTEGRITY_KEYS"] = "0"
    return env
