"""The build request: its schema, and the pure function that validates an event into a BuildJob.

Every error names the field and the reason, so a caller can fix the request without
reading code. Unknown fields are rejected: a typo must not silently do nothing.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import notify
from errors import InvalidRequest
from oss_names import check_bucket, check_key, first_control

MAX_TIMEOUT_S = 86_400  # FC's longest invocation
# Room a target prefix must leave for the longest key fcbuild writes under it for itself
# (`.fcbuild/status/<request id>.json`, ids cut to 80 characters) and for the site's own paths.
TARGET_PREFIX_ROOM = 200

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
CLI_DEPLOY_KEYS = ("function", "region", "account_id", "source", "previews", "url")


@dataclass(frozen=True)
class OssLocation:
    bucket: str
    key: str = ""  # an object (the source archive)
    prefix: str = ""  # a folder: "" (bucket root) or ending in "/"

    @property
    def is_archive(self) -> bool:
        return bool(self.key)

    def url(self) -> str:
        return f"oss://{self.bucket}/{self.key or self.prefix}"


@dataclass(frozen=True)
class GitSource:
    """`{"git": "https://host/org/repo.git", "ref": "main", "token"?, "submodules"?}`."""

    repo: str
    ref: str = "HEAD"
    token: str = field(default="", repr=False)
    submodules: bool = False
    is_archive = False
    bucket = ""

    def url(self) -> str:
        return f"{self.repo}#{self.ref}"


@dataclass(frozen=True)
class CdnSpec:
    domains: tuple[str, ...]
    scheme: str = "https"
    path: str | None = None  # the URL path of the target; None: the target prefix


@dataclass(frozen=True)
class BuildJob:
    source: OssLocation | GitSource
    target: OssLocation
    install: tuple[str, ...] | None = None  # argv; None: chosen from the lockfile
    command: tuple[str, ...] | None = None  # argv; None: `<package manager> run build`
    output_dir: str | None = None  # relative to the package (build.root); None: detected
    root: str | None = None  # a workspace package's folder, relative to the project; None: the project
    command_cwd: str = "package"  # package | root: where build.command runs
    env: Mapping[str, str] = field(default_factory=dict)  # settings: logged as they are
    secrets: Mapping[str, str] = field(default_factory=dict)  # passed the same way, redacted everywhere
    node_version: str | None = None
    timeout_s: int | None = None
    registry: str | None = None
    cache_control: tuple[tuple[str, str], ...] = ()  # (glob, Cache-Control), first match wins
    keep_releases: int = 3  # earlier deploys whose objects stay until that many newer deploys
    require_index: bool = True  # deploy.require_index: an output with no index.html at its root is refused
    cdn: CdnSpec | None = None
    notify: tuple[notify.Target, ...] = ()
    environment: str = "production"  # build.environment: production | preview (DEPLOY_ENV in the build)
    base_path: str = "/"  # build.base_path: the URL path the site is served under
    report: Report | None = None  # the commit to tell how the build went (a webhook's build)
    event: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)  # the request as sent

    def secret_values(self) -> tuple[str, ...]:
        """Values of the request's secrets and notification credentials: written into no saved log."""
        found = list(self.secrets.values())
        for target in self.notify:
            found.extend(target.secrets())
        if isinstance(self.source, GitSource) and self.source.token:
            found.append(self.source.token)
        return tuple(found)


@dataclass(frozen=True)
class Report:
    """`{"repo": "<FCBUILD_REPOS id>", "sha": "...", "pr"?: 12, "url"?: "https://..."}`."""

    repo: str
    sha: str
    pr: int = 0
    url: str = ""


@dataclass(frozen=True)
class SiteRequest:
    """`{"remove": {"target", "repo"?}}` (a preview's folder) or `{"prune": {"older_than_days"}}`."""

    action: str  # remove | prune
    target: OssLocation | None = None
    older_than_days: float = 0.0


def is_site_request(event: Mapping[str, Any]) -> bool:
    return "remove" in event or "prune" in event


def parse_site_request(event: Mapping[str, Any]) -> SiteRequest:
    _no_nul(event)
    if len(event) != 1:
        raise InvalidRequest("body: a remove or prune request has that one field and nothing else")
    if "prune" in event:
        body = _object(event["prune"], "prune")
        _only(body, "prune.", {"older_than_days"})
        days = _require(body, "older_than_days", "prune.")
        if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 3650:
            raise InvalidRequest("prune.older_than_days: a number of days, above 0")
        return SiteRequest("prune", older_than_days=float(days))
    body = _object(event["remove"], "remove")
    _only(body, "remove.", {"target", "repo"})
    return SiteRequest("remove", _location(_require(body, "target", "remove."), "remove.target", want_object=False))


@dataclass(frozen=True)
class ReleaseRequest:
    """`{"rollback": {"target", "release"}}` or `{"releases": {"target"}}`: no build, only releases."""

    action: str  # rollback | list
    target: OssLocation
    release: str = ""  # "previous" or a release id


def is_release_request(event: Mapping[str, Any]) -> bool:
    return "rollback" in event or "releases" in event


def parse_release_request(event: Mapping[str, Any]) -> ReleaseRequest:
    _no_nul(event)
    if len(event) != 1:
        raise InvalidRequest("body: a rollback or releases request has that one field and nothing else")
    if "releases" in event:
        body = _object(event["releases"], "releases")
        _only(body, "releases.", {"target"})
        return ReleaseRequest(
            "list", _location(_require(body, "target", "releases."), "releases.target", want_object=False)
        )
    body = _object(event["rollback"], "rollback")
    _only(body, "rollback.", {"target", "release"})
    target = _location(_require(body, "target", "rollback."), "rollback.target", want_object=False)
    release = _line(body.get("release", "previous"), "rollback.release") or "previous"
    if len(release) > 200:
        raise InvalidRequest("rollback.release: a release id is at most 200 characters")
    return ReleaseRequest("rollback", target, release)


def parse_job(event: Mapping[str, Any]) -> BuildJob:
    """Validate a decoded invoke body into a BuildJob, or raise InvalidRequest naming the field."""
    _only(event, "", {"source", "target", "build", "deploy", "cdn", "notify", "environments", "report"})
    _no_nul(event)
    raw_source = _require(event, "source")
    if isinstance(raw_source, dict) and "git" in raw_source:
        source: OssLocation | GitSource = _git_source(raw_source)
    else:
        source = _location(raw_source, "source", want_object=True)
    target = _location(_require(event, "target"), "target", want_object=False)
    if isinstance(source, OssLocation) and source.is_archive and not source.key.lower().endswith(ARCHIVE_SUFFIXES):
        raise InvalidRequest(
            f"source.key: must end in {', '.join(ARCHIVE_SUFFIXES)} (or give source.prefix for a tree)"
        )
    build = _object(event.get("build", {}), "build")
    _only(
        build,
        "build.",
        {
            "install",
            "command",
            "command_cwd",
            "output_dir",
            "root",
            "env",
            "secrets",
            "node_version",
            "timeout_s",
            "registry",
            "environment",
            "base_path",
        },
    )
    environment = build.get("environment", "production")
    if environment not in ("production", "preview"):
        raise InvalidRequest("build.environment: production or preview")
    env_value = build.get("env", {})
    environments = _object(event.get("environments", {}), "environments")
    _only(environments, "environments.", {"production", "preview"})
    if environment in environments:
        chosen = _object(environments[environment], f"environments.{environment}")
        _only(chosen, f"environments.{environment}.", {"env"})
        # The environment's own settings over the build's: a preview's API URL, say.
        env_value = {
            **_object(env_value, "build.env"),
            **_object(chosen.get("env", {}), f"environments.{environment}.env"),
        }
    env, secrets = _env_and_secrets(env_value, build.get("secrets", {}))
    deploy = _object(event.get("deploy", {}), "deploy")
    # The `fcbuild` command's own settings live in fcbuild.json's deploy section too; the function ignores them.
    _only(deploy, "deploy.", {"cache_control", "keep_releases", "require_index", *CLI_DEPLOY_KEYS})
    require_index = deploy.get("require_index", True)
    if not isinstance(require_index, bool):
        raise InvalidRequest("deploy.require_index: expected true or false")
    return BuildJob(
        source=source,
        target=target,
        install=_command(build.get("install"), "build.install"),
        command=_command(build.get("command"), "build.command"),
        output_dir=_relative_dir(build.get("output_dir"), "build.output_dir"),
        root=_package_root(build.get("root")),
        command_cwd=_command_cwd(build.get("command_cwd", "package")),
        env=env,
        secrets=secrets,
        node_version=_node_version(build.get("node_version")),
        timeout_s=_timeout(build.get("timeout_s"), "build.timeout_s"),
        registry=_registry(build.get("registry"), "build.registry"),
        cache_control=_cache_rules(deploy.get("cache_control", []), "deploy.cache_control"),
        keep_releases=_bounded_int(deploy.get("keep_releases", 3), "deploy.keep_releases", 0, 100),
        require_index=require_index,
        cdn=_cdn(event.get("cdn"), "cdn"),
        notify=_notify(event.get("notify", []), "notify"),
        environment=environment,
        base_path=_base_path(build.get("base_path", "/")),
        report=_report(event.get("report")),
        event=dict(event),
    )


def _base_path(value: Any) -> str:
    text = _string(value, "build.base_path")
    if not text.startswith("/") or "//" in text or any(part in (".", "..") for part in text.split("/")):
        raise InvalidRequest("build.base_path: a URL path from the domain's root, e.g. /pr-12/")
    if len(text) > 200 or not re.fullmatch(r"[A-Za-z0-9._~/-]+", text):
        raise InvalidRequest("build.base_path: letters, digits, '.', '_', '~', '-' and '/' only, at most 200")
    return text if text.endswith("/") else text + "/"


def _report(value: Any) -> Report | None:
    if value is None:
        return None
    body = _object(value, "report")
    _only(body, "report.", {"repo", "sha", "pr", "url"})
    sha = _string(body.get("sha", ""), "report.sha")
    if sha and not re.fullmatch(r"[0-9a-f]{7,64}", sha):
        raise InvalidRequest("report.sha: a commit's hex id")
    pr = body.get("pr", 0)
    if isinstance(pr, bool) or not isinstance(pr, int) or pr < 0:
        raise InvalidRequest("report.pr: a pull request's number")
    url = _string(body.get("url", ""), "report.url")
    if url and not url.startswith(("https://", "http://")):
        raise InvalidRequest("report.url: an http(s) URL")
    return Report(_string(_require(body, "repo", "report."), "report.repo"), sha, pr, _one_line(url, "report.url"))


def _notify(value: Any, where: str) -> tuple[notify.Target, ...]:
    """`[{"type": "webhook"|"dingtalk"|"feishu"|"wecom", "url", "secret"?, "on"?: ["success", "failure"]}]`."""
    if not isinstance(value, list) or len(value) > 10:
        raise InvalidRequest(f"{where}: expected a list of at most 10 notification targets")
    targets = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        item = _object(item, here)
        _only(item, f"{here}.", {"type", "url", "secret", "on"})
        kind = item.get("type", "webhook")
        if kind not in notify.KINDS:
            raise InvalidRequest(f"{here}.type: expected one of {', '.join(notify.KINDS)}, got {kind!r}")
        url = _line(_require(item, "url", f"{here}."), f"{here}.url") or ""
        if not re.match(r"^https?://[^\s/]+", url) or len(url) > 2048:
            raise InvalidRequest(f"{here}.url: expected an http(s) URL of at most 2048 characters")
        secret = _optional_str(item.get("secret"), f"{here}.secret") or ""
        if secret and len(secret) < 6:
            raise InvalidRequest(f"{here}.secret: at least 6 characters (shorter ones cannot be redacted reliably)")
        on = item.get("on", list(notify.EVENTS))
        if not isinstance(on, list) or not on or any(e not in notify.EVENTS for e in on):
            raise InvalidRequest(f"{here}.on: expected a non-empty list of success and failure")
        targets.append(notify.Target(kind, url, secret, tuple(on)))
    return tuple(targets)


def _no_nul(event: Mapping[str, Any]) -> None:
    """No string anywhere in the request may hold a NUL: no file name, argument or header can."""
    todo: list[tuple[str, Any]] = [("", event)]
    while todo:
        where, value = todo.pop()
        if isinstance(value, dict):
            todo.extend((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
            for k in value:
                if "\0" in k:
                    raise InvalidRequest(f"{where or 'body'}: a field name has a NUL character")
        elif isinstance(value, list):
            todo.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, str) and "\0" in value:
            raise InvalidRequest(f"{where}: has a NUL character")


def _one_line(text: str, where: str) -> str:
    control = first_control(text)
    if control >= 0:
        raise InvalidRequest(f"{where}: has a control character ({text[control]!r} at {control})")
    return text


def _require(obj: Mapping[str, Any], name: str, where: str = "") -> Any:
    if name not in obj or obj[name] is None:
        raise InvalidRequest(f"{where}{name}: required")
    return obj[name]


def _only(obj: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InvalidRequest(f"{where}{unknown[0]!r}: unknown field (allowed: {', '.join(sorted(allowed))})")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: expected an object, got {_type(value)}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: expected a string, got {_type(value)}")
    return value


def _optional_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    text = _string(value, where).strip()
    if not text:
        raise InvalidRequest(f"{where}: must not be empty")
    return text


def _location(value: Any, where: str, *, want_object: bool) -> OssLocation:
    if isinstance(value, str):
        if not value.startswith("oss://"):
            raise InvalidRequest(f"{where}: a string must look like oss://bucket/path, got {value!r}")
        bucket, _, path = value[len("oss://") :].partition("/")
        is_folder = path.endswith("/") or not path or not want_object
        value = {"bucket": bucket, "prefix": path} if is_folder else {"bucket": bucket, "key": path}
    value = _object(value, where)
    _only(value, f"{where}.", {"bucket", "key", "prefix"} if want_object else {"bucket", "prefix"})
    bucket = check_bucket(_string(_require(value, "bucket", f"{where}."), f"{where}.bucket"), f"{where}.bucket")
    key = value.get("key")
    prefix = value.get("prefix")
    if key is not None and prefix is not None:
        raise InvalidRequest(f"{where}: give key (an archive) or prefix (a folder), not both")
    if key is not None:
        key = check_key(_string(key, f"{where}.key"), f"{where}.key")
        if key.endswith("/"):
            raise InvalidRequest(f"{where}.key: must be an object name, not a folder (it ends in /)")
        return OssLocation(bucket, key=key)
    if want_object and prefix is None:
        raise InvalidRequest(f"{where}: needs key (an archive) or prefix (a project folder)")
    prefix = _string(prefix or "", f"{where}.prefix").strip("/")
    if "//" in prefix:
        raise InvalidRequest(f"{where}.prefix: must not have empty segments ('//')")
    room = 0 if want_object else TARGET_PREFIX_ROOM
    prefix = check_key(f"{prefix}/", f"{where}.prefix", room=room) if prefix else ""
    return OssLocation(bucket, prefix=prefix)


def _command(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise InvalidRequest(f"{where}: must not be empty")
        return ("sh", "-c", value)
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value) and value[0]:
        return tuple(value)
    raise InvalidRequest(f"{where}: expected a non-empty list of strings (argv) or a string for sh -c")


def _relative_dir(value: Any, where: str) -> str | None:
    if value is None:
        return None
    text = _one_line(_string(value, where).strip(), where)
    norm = posixpath.normpath(text) if text else ""
    if not text or text.startswith("/") or norm == ".." or norm.startswith("../"):
        raise InvalidRequest(f"{where}: must be a folder inside the project, got {text!r}")
    return norm


SECRET_NAME_PARTS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "AUTH", "CREDENTIAL", "PRIVATE")
MIN_SECRET_CHARS = 6


def looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


def _env_and_secrets(env_value: Any, secrets_value: Any) -> tuple[dict[str, str], dict[str, str]]:
    """`build.env` holds settings, logged as they are; `build.secrets`, and any `build.env` entry whose
    name looks secret (TOKEN, SECRET, PASSWORD, KEY, AUTH...), are redacted everywhere. A secret
    shorter than 6 characters cannot be redacted without mangling ordinary output: refused."""
    env = _env(env_value, "build.env")
    secrets = _env(secrets_value, "build.secrets")
    for name in [n for n in env if looks_secret(n)]:
        secrets[name] = env.pop(name)
    for name, value in secrets.items():
        where = "build.secrets" if name in (secrets_value if isinstance(secrets_value, dict) else {}) else "build.env"
        if len(value) < MIN_SECRET_CHARS:
            raise InvalidRequest(
                f"{where}.{name}: a secret of {len(value)} characters cannot be redacted reliably from logs; "
                f"use at least {MIN_SECRET_CHARS}"
            )
        if name in env:
            raise InvalidRequest(f"build.secrets.{name}: also in build.env")
    return env, secrets


LTS_CODENAMES = {
    "argon": 4,
    "boron": 6,
    "carbon": 8,
    "dubnium": 10,
    "erbium": 12,
    "fermium": 14,
    "gallium": 16,
    "hydrogen": 18,
    "iron": 20,
    "jod": 22,
    "krypton": 24,
}
_COMPARATOR_RE = re.compile(r"^(\^|~|>=|<=|>|<|=)?v?(\d+|[xX*])(\.(\d+|[xX*])){0,2}(-[0-9A-Za-z.]+)?$")


def _node_version(value: Any) -> str | None:
    """An npm range (`20`, `^18.17`, `>=18 <21`, `18 || 20`, `16 - 20`), `lts/*` or `lts/<codename>`
    (codenames become their major); anything else is refused before any download."""
    where = "build.node_version"
    text = _line(value, where)
    if text is None:
        return None
    if len(text) > 100:
        raise InvalidRequest(f"{where}: at most 100 characters")
    lowered = text.lower()
    if lowered == "lts/*":
        return "lts/*"
    if lowered.startswith("lts/"):
        major = LTS_CODENAMES.get(lowered[4:])
        if major is None:
            known = ", ".join(f"lts/{n}" for n in LTS_CODENAMES)
            raise InvalidRequest(f"{where}: {text!r} names no Node.js LTS line (known: lts/*, {known})")
        return str(major)
    if not valid_range(text):
        raise InvalidRequest(
            f"{where}: {text!r} is not a version range (examples: 20, ^18.17, >=18 <21, 18 || 20, lts/*, lts/iron)"
        )
    return text


def valid_range(text: str) -> bool:
    for alternative in text.split("||"):
        alternative = alternative.strip()
        if not alternative:
            return False
        hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", alternative)
        parts = [hyphen[1], hyphen[2]] if hyphen else re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", alternative).split()
        if not parts or not all(_COMPARATOR_RE.match(p) for p in parts):
            return False
    return True


def _git_source(value: Mapping[str, Any]) -> GitSource:
    _only(value, "source.", {"git", "ref", "token", "submodules"})
    repo = _line(value.get("git"), "source.git") or ""
    if not re.match(r"^https?://[^\s/@]+/\S+$", repo) or len(repo) > 2048:
        raise InvalidRequest(
            "source.git: expected an http(s) repository URL without credentials in it (give source.token)"
        )
    ref = _line(value.get("ref", "HEAD"), "source.ref") or "HEAD"
    if ref.startswith("-") or len(ref) > 250 or any(c in ref for c in " ~^:?*[\\"):
        raise InvalidRequest(f"source.ref: {ref[:80]!r} is not a branch, tag or commit")
    token = _optional_str(value.get("token"), "source.token") or ""
    if token and len(token) < 6:
        raise InvalidRequest("source.token: at least 6 characters (shorter ones cannot be redacted reliably)")
    submodules = value.get("submodules", False)
    if not isinstance(submodules, bool):
        raise InvalidRequest("source.submodules: expected true or false")
    return GitSource(repo, ref, token, submodules)


def _package_root(value: Any) -> str | None:
    root = _relative_dir(value, "build.root")
    return None if root in (None, ".") else root


def _command_cwd(value: Any) -> str:
    if value not in ("package", "root"):
        raise InvalidRequest(f"build.command_cwd: expected package or root, got {value!r}")
    return value


def _env(value: Any, where: str) -> dict[str, str]:
    value = _object(value, where)
    env: dict[str, str] = {}
    for name, val in value.items():
        if not _ENV_NAME_RE.match(name):
            raise InvalidRequest(f"{where}.{name}: not a valid environment variable name")
        if not isinstance(val, str):
            raise InvalidRequest(f"{where}.{name}: expected a string, got {_type(val)}")
        env[name] = val
    return env


def _timeout(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TIMEOUT_S:
        raise InvalidRequest(f"{where}: expected a whole number of seconds from 1 to {MAX_TIMEOUT_S}, got {value!r}")
    return value


_HOST_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _cdn(value: Any, where: str) -> CdnSpec | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = {"domains": value}
    value = _object(value, where)
    _only(value, f"{where}.", {"domains", "scheme", "path"})
    domains = _require(value, "domains", f"{where}.")
    if not isinstance(domains, list) or not 1 <= len(domains) <= 10:
        raise InvalidRequest(f"{where}.domains: expected a list of 1 to 10 domain names")
    for i, domain in enumerate(domains):
        if not isinstance(domain, str) or not _HOST_RE.match(domain):
            raise InvalidRequest(f"{where}.domains[{i}]: {domain!r} is not a domain name")
    scheme = value.get("scheme", "https")
    if scheme not in ("http", "https"):
        raise InvalidRequest(f"{where}.scheme: expected http or https, got {scheme!r}")
    path = value.get("path")
    if path is not None:
        path = _string(path, f"{where}.path").strip("/")
        path = f"{path}/" if path else ""
    return CdnSpec(tuple(domains), scheme, path)


def _bounded_int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{where}: expected a whole number from {low} to {high}, got {value!r}")
    return value


def _line(value: Any, where: str) -> str | None:
    text = _optional_str(value, where)
    return None if text is None else _one_line(text, where)


def _registry(value: Any, where: str) -> str | None:
    text = _line(value, where)
    if text is not None and not re.match(r"^https?://[^\s/]+", text):
        raise InvalidRequest(f"{where}: expected an http(s) URL, got {text!r}")
    return text


def _cache_rules(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{where}: expected a list of {{pattern, value}} objects, got {_type(value)}")
    rules = []
    for i, rule in enumerate(value):
        here = f"{where}[{i}]"
        rule = _object(rule, here)
        _only(rule, f"{here}.", {"pattern", "value"})
        pattern = _line(_require(rule, "pattern", f"{here}."), f"{here}.pattern")
        header = _optional_str(_require(rule, "value", f"{here}."), f"{here}.value")
        if not re.fullmatch(r"[\x20-\x7e]{1,1024}", header or ""):
            raise InvalidRequest(f"{here}.value: must be visible ASCII (an HTTP header value), at most 1024 characters")
        rules.append((pattern or "", header or ""))
    return tuple(rules)


def _type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", float: "a number"}.get(
        type(value), "a number"
    )
