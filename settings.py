"""The pipeline's and OSS I/O's tunables, read from the environment once at start-up.

Stdlib only, so that the runtime can build its whole configuration before it imports
anything heavy. Every variable is listed in the README's table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from context import CREDENTIAL_VARS
from oss_names import check_bucket, check_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Variables a build's child processes may inherit from the runtime's environment. An
# allowlist, not a denylist: FC puts the function role's credentials in the environment.
CHILD_ENV_ALLOWLIST = (
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
)
CHILD_ENV_PREFIX_ALLOWLIST = ("LC_",)
DEFAULT_NODE_PATHS = ("/var/fc/lang/nodejs*", "/opt/nodejs*", "/usr/local/lib/nodejs*")


@dataclass(frozen=True)
class PipelineSettings:
    workspace_root: str = "/tmp/fcbuild"
    oss_endpoint: str = ""
    oss_region: str = ""
    upload_concurrency: int = 16
    upload_max_concurrency: int = 64
    multipart_threshold: int = 16 * 1024 * 1024
    part_size: int = 8 * 1024 * 1024
    oss_retries: int = 5
    node_paths: tuple[str, ...] = DEFAULT_NODE_PATHS
    node_download: bool = True  # FCBUILD_NODE_DOWNLOAD: fetch a Node.js release no install here satisfies
    npm_registry: str = ""
    min_free_mb: int = 256
    upload_margin_s: int = 30
    default_timeout_s: int = 900
    max_archive_bytes: int = 4 * 1024**3
    max_archive_files: int = 200_000
    build_max_procs: int = 512  # FCBUILD_BUILD_MAX_PROCS: processes and threads of a build user (FC allows 1,024)
    build_max_open_files: int = 65536  # FCBUILD_BUILD_MAX_OPEN_FILES: per process of a build
    log_max_bytes: int = 20 * 1024 * 1024  # FCBUILD_LOG_MAX_MB: a build log's share of disk, memory and the logs
    max_output_files: int = 100_000  # FCBUILD_MAX_FILES: a deploy of more is refused before anything is uploaded
    max_output_bytes: int = 5120 * 1024 * 1024  # FCBUILD_MAX_OUTPUT_MB
    keep_workspace: bool = False
    cache_enabled: bool = True
    cache_max_bytes: int = 2048 * 1024 * 1024
    cache_bucket: str = ""  # empty: the target bucket
    cache_prefix: str = ""  # empty: <target prefix>.fcbuild/deps/
    cdn_endpoint: str = ""  # empty: the CDN API's own
    max_builds: int = 1  # builds at once on this instance; the rest wait their turn
    queue_wait_s: int = 120  # how long a build waits for a slot before it is answered Busy
    build_uids: tuple[int, int] = (20000, 20063)  # first and last uid of the build users (when root)
    build_uids_given: bool = False  # FCBUILD_BUILD_UIDS set: refuse a range another runtime holds, never move it
    corepack_signatures: bool = True  # check npm's signatures of pnpm/yarn releases from the official registry
    git_token: str = field(default="", repr=False)  # FCBUILD_GIT_TOKEN: for git sources that name none
    target_template: str = ""  # FCBUILD_TARGET: where an OSS trigger's archive deploys, without fcbuild.json
    allowed_targets: tuple[str, ...] = ()  # FCBUILD_ALLOWED_TARGETS: where any build may deploy (empty: anywhere)
    git_hosts: tuple[str, ...] = ()  # FCBUILD_GIT_HOSTS: the hosts FCBUILD_GIT_TOKEN may be sent to
    # FCBUILD_ALLOW_PRIVATE_NETS: non-public networks that requester-chosen URLs may reach anyway
    allow_private_nets: tuple[Any, ...] = ()
    repos: tuple[Any, ...] = ()  # FCBUILD_REPOS: the repositories webhooks may build (hooks.Repo)
    fc_endpoint: str = ""  # FCBUILD_FC_ENDPOINT: FC's API for the self-invocation ("": the internal one)
    hook_max_bytes: int = 5 * 1024 * 1024  # FCBUILD_HOOK_MAX_KB: a webhook delivery's largest body
    # Webhook secrets and status tokens: provider or variable name -> value (FCBUILD_GITHUB_SECRET, ...).
    hook_secrets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    # The environment as it was before the program started: the base of every child's
    # environment (filtered by CHILD_ENV_ALLOWLIST) and the source of the original PATH.
    launch_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, frozen: bool = False) -> PipelineSettings:
        get = environ.get
        repos = _repos(get("FCBUILD_REPOS", ""))
        node_paths = tuple(p for p in get("FCBUILD_NODE_PATHS", "").split(":") if p) or DEFAULT_NODE_PATHS
        return cls(
            workspace_root=get("FCBUILD_WORKSPACE_ROOT") or os.path.join(get("TMPDIR") or "/tmp", "fcbuild"),
            oss_endpoint=get("FCBUILD_OSS_ENDPOINT", "").rstrip("/"),
            oss_region=get("FCBUILD_OSS_REGION", ""),
            upload_concurrency=_positive(get, "FCBUILD_UPLOAD_CONCURRENCY", 16),
            upload_max_concurrency=_positive(get, "FCBUILD_UPLOAD_MAX_CONCURRENCY", 64),
            multipart_threshold=_positive(get, "FCBUILD_MULTIPART_THRESHOLD_MB", 16) * 1024 * 1024,
            part_size=_positive(get, "FCBUILD_PART_SIZE_MB", 8) * 1024 * 1024,
            oss_retries=_positive(get, "FCBUILD_OSS_RETRIES", 5, minimum=0),
            node_paths=node_paths,
            node_download=get("FCBUILD_NODE_DOWNLOAD", "1") not in ("0", "false", "no"),
            npm_registry=get("FCBUILD_NPM_REGISTRY", ""),
            min_free_mb=_positive(get, "FCBUILD_MIN_FREE_MB", 256, minimum=0),
            upload_margin_s=_positive(get, "FCBUILD_UPLOAD_MARGIN_S", 30, minimum=0),
            default_timeout_s=_positive(get, "FCBUILD_DEFAULT_TIMEOUT_S", 900),
            max_archive_bytes=_positive(get, "FCBUILD_MAX_ARCHIVE_MB", 4096) * 1024 * 1024,
            max_archive_files=_positive(get, "FCBUILD_MAX_ARCHIVE_FILES", 200_000),
            log_max_bytes=_positive(get, "FCBUILD_LOG_MAX_MB", 20) * 1024 * 1024,
            build_max_procs=_positive(get, "FCBUILD_BUILD_MAX_PROCS", 512, minimum=16),
            build_max_open_files=_positive(get, "FCBUILD_BUILD_MAX_OPEN_FILES", 65536, minimum=64),
            max_output_files=_positive(get, "FCBUILD_MAX_FILES", 100_000),
            max_output_bytes=_positive(get, "FCBUILD_MAX_OUTPUT_MB", 5120) * 1024 * 1024,
            keep_workspace=get("FCBUILD_KEEP_WORKSPACE", "") in ("1", "true", "yes"),
            cache_enabled=get("FCBUILD_CACHE", "1") not in ("0", "false", "no"),
            cache_max_bytes=_positive(get, "FCBUILD_CACHE_MAX_MB", 2048, minimum=0) * 1024 * 1024,
            cache_bucket=_cache_bucket(get("FCBUILD_CACHE_BUCKET", "")),
            cache_prefix=_cache_prefix(get("FCBUILD_CACHE_PREFIX", "")),
            cdn_endpoint=get("FCBUILD_CDN_ENDPOINT", "").rstrip("/"),
            max_builds=_positive(get, "FCBUILD_MAX_BUILDS", 1),
            corepack_signatures=get("FCBUILD_COREPACK_SIGNATURES", "1") not in ("0", "false", "no"),
            target_template=get("FCBUILD_TARGET", ""),
            git_token=get("FCBUILD_GIT_TOKEN", ""),
            allowed_targets=_allowed_targets(get("FCBUILD_ALLOWED_TARGETS", "")),
            git_hosts=tuple(h.strip().lower() for h in get("FCBUILD_GIT_HOSTS", "").split(",") if h.strip()),
            allow_private_nets=_networks(get("FCBUILD_ALLOW_PRIVATE_NETS", "")),
            queue_wait_s=_positive(get, "FCBUILD_QUEUE_WAIT_S", 120, minimum=0),
            build_uids=_uid_range(get("FCBUILD_BUILD_UIDS", ""), _positive(get, "FCBUILD_MAX_BUILDS", 1)),
            build_uids_given=bool(get("FCBUILD_BUILD_UIDS", "")),
            repos=repos,
            fc_endpoint=get("FCBUILD_FC_ENDPOINT", "").rstrip("/"),
            hook_max_bytes=_positive(get, "FCBUILD_HOOK_MAX_KB", 5120) * 1024,
            hook_secrets=MappingProxyType(_hook_secrets(environ, repos)),
            launch_env=MappingProxyType(launch_environment(environ, frozen=frozen)),
        )

    def hook_secret_values(self) -> tuple[str, ...]:
        return tuple(v for v in self.hook_secrets.values() if v)


def library_path(launch_env: Mapping[str, str]) -> dict[str, str]:
    """LD_LIBRARY_PATH as it was before a frozen bootloader changed it, for a child the runtime
    starts ({} when it was unset)."""
    value = launch_env.get("LD_LIBRARY_PATH")
    return {"LD_LIBRARY_PATH": value} if value else {}


def allowed_env(launch_env: Mapping[str, str]) -> dict[str, str]:
    """What a child of the runtime starts from: the allowlisted part of its environment (no
    credential, nothing FC-internal), with its library path."""
    env = {k: v for k, v in launch_env.items() if k in CHILD_ENV_ALLOWLIST or k.startswith(CHILD_ENV_PREFIX_ALLOWLIST)}
    env.update(library_path(launch_env))
    return env


def launch_environment(environ: Mapping[str, str], *, frozen: bool) -> dict[str, str]:
    """The environment without what a PyInstaller bootloader added.

    The frozen `bootstrap` prepends its own library folder to LD_LIBRARY_PATH and keeps
    the original in LD_LIBRARY_PATH_ORIG. A child (node, npm, sh) that inherits the
    bundle's folder loads the bundled glibc and fails on an older system.
    """
    env = {k: v for k, v in environ.items() if k not in CREDENTIAL_VARS}
    if frozen:
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is None:
            env.pop("LD_LIBRARY_PATH", None)
        else:
            env["LD_LIBRARY_PATH"] = original
    return env


def _repos(raw: str) -> tuple[Any, ...]:
    import hooks  # stdlib only: cheap at start

    return hooks.parse_repos(raw) if raw.strip() else ()


def _hook_secrets(environ: Mapping[str, str], repos: tuple[Any, ...]) -> dict[str, str]:
    """Every webhook secret, status token and deploy hook id the function's environment holds: the
    providers' variables and those FCBUILD_REPOS names (`secret_env`, `deploy_hooks[].id_env`)."""
    import hooks

    names = {*hooks.SECRET_VARS.values(), *hooks.STATUS_TOKEN_VARS.values()}
    for repo in repos:
        names.update(n for n in (repo.secret_var, *(v for v, _ in repo.deploy_hooks)) if n)
    return {n: environ[n] for n in sorted(names) if environ.get(n)}


def _allowed_targets(raw: str) -> tuple[str, ...]:
    if not raw.strip():
        return ()  # triggers is imported only when there is something to parse (before the port opens)
    from triggers import parse_allowed

    return parse_allowed(raw)


def _networks(raw: str) -> tuple[Any, ...]:
    if not raw.strip():
        return ()  # egress (and ipaddress) is imported only when there is something to parse
    from egress import parse_networks

    return parse_networks(raw)


def _cache_bucket(raw: str) -> str:
    if raw:
        _as_setting(lambda: check_bucket(raw, "FCBUILD_CACHE_BUCKET"))
    return raw


def _cache_prefix(raw: str) -> str:
    prefix = raw.strip("/")
    if prefix:
        _as_setting(lambda: check_key(prefix + "/", "FCBUILD_CACHE_PREFIX", room=100))
    return f"{prefix}/" if prefix else ""


def _as_setting(check: Callable[[], object]) -> None:
    from errors import InvalidRequest

    try:
        check()
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from None


def _uid_range(raw: str, slots: int) -> tuple[int, int]:
    """FCBUILD_BUILD_UIDS: `FIRST-LAST`, unprivileged, at least one uid per build slot."""
    if not raw:
        return (20000, 20000 + max(63, slots - 1))
    first, sep, last = raw.partition("-")
    if not (first.isdigit() and (not sep or last.isdigit())):
        raise ValueError(f"FCBUILD_BUILD_UIDS must be FIRST-LAST, got {raw!r}")
    low, high = int(first), int(last) if sep else int(first)
    if low < 1000 or high < low or high >= 2**31 - 1:
        raise ValueError(f"FCBUILD_BUILD_UIDS must be a range of unprivileged uids (1000 and up), got {raw!r}")
    if high - low + 1 < slots:
        raise ValueError(f"FCBUILD_BUILD_UIDS {raw!r} has fewer uids than FCBUILD_MAX_BUILDS ({slots})")
    return (low, high)


def _positive(get, name: str, default: int, *, minimum: int = 1) -> int:
    raw = get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value
