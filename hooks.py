"""Git webhooks: which repositories may build, how each provider's delivery is verified, and what a
verified delivery asks for. Pure: no I/O (push_deploy does the storage and the invocation).

- The repositories come from the function's environment (`FCBUILD_REPOS`), never from a delivery:
  a delivery names a repository, and only a configured one builds, from the URL configured for it,
  into the targets configured for it. A pull request's `fcbuild.json` is written by whoever opened
  it, so nothing there chooses a target.
- Verification comes first, on the raw body, before anything in it is read:
  GitHub `X-Hub-Signature-256` (HMAC-SHA256 of the body), GitLab `X-Gitlab-Token` and Codeup
  `X-Codeup-Token` (the secret itself), Gitee `X-Gitee-Token` (the password, or the signature of
  `X-Gitee-Timestamp`, within a window). Every comparison takes constant time.
- A delivery becomes a plan: build production, build a preview (`pr-<n>` or the branch's slug),
  remove a preview, answer a ping, or ignore it with a reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

PROVIDERS = ("github", "gitlab", "gitee", "codeup")
SECRET_VARS = {
    "github": "FCBUILD_GITHUB_SECRET",
    "gitlab": "FCBUILD_GITLAB_TOKEN",
    "gitee": "FCBUILD_GITEE_SECRET",
    "codeup": "FCBUILD_CODEUP_TOKEN",
}
# Tokens for reporting back on the commit (commit statuses, or a pull-request comment on Gitee).
STATUS_TOKEN_VARS = {
    "github": "FCBUILD_GITHUB_STATUS_TOKEN",
    "gitlab": "FCBUILD_GITLAB_STATUS_TOKEN",
    "gitee": "FCBUILD_GITEE_STATUS_TOKEN",
    "codeup": "FCBUILD_CODEUP_STATUS_TOKEN",
}
DEFAULT_APIS = {
    "github": "https://api.github.com",
    "gitlab": "https://gitlab.com/api/v4",
    "gitee": "https://gitee.com/api/v5",
    "codeup": "https://openapi-rdc.aliyuncs.com",  # Yunxiao's OpenAPI, central edition
}
MAX_BODY = 5 * 1024 * 1024  # GitHub caps deliveries at 25 MB; a push or pull request is far smaller
GITEE_WINDOW_S = 15 * 60  # a signed Gitee delivery older (or newer) than this is a replay
MIN_DEPLOY_HOOK_ID = 20
SLUG_MAX = 63
ZERO_SHA = "0" * 40
_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class HookRefused(Exception):
    """A delivery that starts nothing: the HTTP status and a message for the provider's log."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Previews:
    target: str  # oss://bucket/prefix/{slug}/
    url: str  # https://host/path/{slug}/ or https://{slug}.host/
    branches: bool = True  # a push to another branch than production deploys that branch's preview

    def target_for(self, slug: str) -> str:
        return self.target.replace("{slug}", slug)

    def url_for(self, slug: str) -> str:
        return self.url.replace("{slug}", slug)

    def base_path(self, slug: str) -> str:
        """The URL path the preview is served under ("/" on a domain of its own)."""
        path = urlsplit(self.url_for(slug)).path or "/"
        return path if path.endswith("/") else path + "/"

    def slug_of(self, target: str) -> str | None:
        """The slug whose preview `target` is, or None: the only targets a removal may name."""
        head, _, tail = self.target.partition("{slug}")
        if not (target.startswith(head) and target.endswith(tail)):
            return None
        slug = target[len(head) : len(target) - len(tail)]
        return slug if _SLUG_RE.match(slug) else None

    def root(self) -> str:
        """oss://bucket/prefix/ holding every preview (what prune looks through)."""
        return self.target.partition("{slug}")[0]


@dataclass(frozen=True)
class Repo:
    id: str  # owner/name as the provider's API names it ("acme/web"; default: the URL's path)
    provider: str
    url: str  # what is cloned
    target: str  # production: oss://bucket/prefix/
    branch: str = "main"  # production
    previews: Previews | None = None
    secret_var: str = ""  # the variable with this repository's webhook secret ("": the provider's)
    api: str = ""  # the provider's API, for statuses ("": the provider's public one)
    project_id: str = ""  # GitLab/Codeup: the project's id or path for the status API ("": from the URL)
    organization: str = ""  # Codeup: the organization's id (central edition; "": the URL's first folder)
    env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # per environment: production, preview
    deploy_hooks: tuple[tuple[str, str], ...] = ()  # (variable holding the hook's id, branch)
    forks: bool = False  # build pull requests from forks (their code runs with a preview's access)

    def path(self) -> str:
        """owner/name as the URL spells it, without `.git`."""
        return _repo_path(self.url)

    def codeup_organization(self) -> str:
        """Codeup's organization for the status API: the configured one; on the central edition's API
        the clone URL's first folder (https://codeup.aliyun.com/<organization id>/web.git); "" on a
        region edition's own endpoint, whose paths name no organization."""
        if self.organization or (self.api and self.api != DEFAULT_APIS["codeup"]):
            return self.organization
        return self.path().split("/", 1)[0]


def _repo_path(url: str) -> str:
    path = urlsplit(url).path.strip("/")
    return path[:-4] if path.endswith(".git") else path


def same_repo(a: str, b: str) -> bool:
    """Two URLs of one repository: host and path, case-insensitively, with or without `.git`."""
    sa, sb = urlsplit(a.strip()), urlsplit(b.strip())
    host_a, host_b = (sa.hostname or "").lower(), (sb.hostname or "").lower()
    return bool(host_a) and host_a == host_b and sa.port == sb.port and _repo_path(a).lower() == _repo_path(b).lower()


def parse_repos(raw: str, read_file: Any = None) -> tuple[Repo, ...]:
    """FCBUILD_REPOS: a JSON list of repositories, or `@/path/to/file.json` holding it (the
    function's variables share 4 KB). Raises ValueError naming the entry and field."""
    raw = raw.strip()
    if not raw:
        return ()
    if raw.startswith("@"):
        with open(raw[1:], encoding="utf-8") as f:
            raw = f.read()
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"FCBUILD_REPOS: not valid JSON ({exc})") from None
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise ValueError("FCBUILD_REPOS: expected a list of repositories")
    repos = [_repo(entry, i) for i, entry in enumerate(doc)]
    ids = [r.id for r in repos]
    for rid in ids:
        if ids.count(rid) > 1:
            raise ValueError(f"FCBUILD_REPOS: {rid!r} is configured twice (give each an id of its own)")
    return tuple(repos)


_REPO_FIELDS = {
    "id",
    "provider",
    "url",
    "target",
    "branch",
    "previews",
    "secret_env",
    "api",
    "project_id",
    "organization",
    "env",
    "deploy_hooks",
    "forks",
}


def _repo(entry: Any, i: int) -> Repo:
    where = f"FCBUILD_REPOS[{i}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object")
    unknown = sorted(set(entry) - _REPO_FIELDS)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field (allowed: {', '.join(sorted(_REPO_FIELDS))})")
    url = _text(entry, "url", where, required=True)
    if urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).hostname:
        raise ValueError(f"{where}.url: an http(s) clone URL, e.g. https://github.com/acme/web.git")
    provider = _text(entry, "provider", where) or _guess_provider(url)
    if provider not in PROVIDERS:
        raise ValueError(f"{where}.provider: one of {', '.join(PROVIDERS)} (it cannot be told from the URL)")
    target = _folder(_text(entry, "target", where, required=True), f"{where}.target")
    previews = None
    if entry.get("previews") is not None:
        p = entry["previews"]
        if not isinstance(p, dict) or set(p) - {"target", "url", "branches"}:
            raise ValueError(f'{where}.previews: {{"target": "oss://.../{{slug}}/", "url": "https://.../{{slug}}/"}}')
        ptarget = _folder(str(p.get("target", "")), f"{where}.previews.target")
        purl = str(p.get("url", ""))
        if ptarget.count("{slug}") != 1 or "/{slug}/" not in ptarget.replace("oss://", "/", 1):
            raise ValueError(
                f"{where}.previews.target: needs {{slug}} once, as a whole folder (oss://previews/{{slug}}/)"
            )
        if purl.count("{slug}") != 1 or urlsplit(purl.replace("{slug}", "x")).scheme not in ("https", "http"):
            raise ValueError(f"{where}.previews.url: an http(s) URL with {{slug}} once")
        if Previews(ptarget, purl).slug_of(target) is not None or target.startswith(Previews(ptarget, purl).root()):
            raise ValueError(f"{where}.previews.target: the production target must not be one of the previews")
        if ptarget.startswith(target):
            raise ValueError(f"{where}.previews.target: previews must not be inside the production site {target}")
        previews = Previews(ptarget, purl, bool(p.get("branches", True)))
    env: dict[str, dict[str, str]] = {}
    for name, values in (entry.get("env") or {}).items():
        if name not in ("production", "preview") or not isinstance(values, dict):
            raise ValueError(f'{where}.env: {{"production": {{...}}, "preview": {{...}}}}')
        env[name] = {str(k): str(v) for k, v in values.items()}
    hooks = []
    for j, hook in enumerate(entry.get("deploy_hooks") or []):
        if not isinstance(hook, dict) or not hook.get("id_env"):
            raise ValueError(f'{where}.deploy_hooks[{j}]: {{"id_env": "VARIABLE", "branch": "main"}}')
        hooks.append((str(hook["id_env"]), str(hook.get("branch") or entry.get("branch") or "main")))
    return Repo(
        id=_text(entry, "id", where) or _repo_path(url),
        provider=provider,
        url=url,
        target=target,
        branch=_text(entry, "branch", where) or "main",
        previews=previews,
        secret_var=_text(entry, "secret_env", where),
        api=_text(entry, "api", where).rstrip("/"),
        project_id=_text(entry, "project_id", where),
        organization=_text(entry, "organization", where),
        env=env,
        deploy_hooks=tuple(hooks),
        forks=bool(entry.get("forks", False)),
    )


def _text(entry: Mapping[str, Any], name: str, where: str, *, required: bool = False) -> str:
    value = entry.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValueError(f"{where}.{name}: expected {'a non-empty ' if required else 'a '}string")
    return value.strip()


def _folder(url: str, where: str) -> str:
    if not url.startswith("oss://") or len(url) <= len("oss://"):
        raise ValueError(f"{where}: an oss://bucket/prefix/ folder")
    return url if url.endswith("/") else url + "/"


def _guess_provider(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    for provider, marker in (("github", "github"), ("gitlab", "gitlab"), ("gitee", "gitee"), ("codeup", "codeup")):
        if marker in host:
            return provider
    return ""


# --- verification ---------------------------------------------------------------------------------


def header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    return value.strip() if isinstance(value, str) else ""


def verify(provider: str, headers: Mapping[str, str], body: bytes, secret: str, now: float | None = None) -> None:
    """The delivery was sent by the provider holding `secret`, or HookRefused (401)."""
    if not secret:
        raise HookRefused(403, f"{SECRET_VARS[provider]} is not set: {provider} webhooks are off")
    if provider == "github":
        given = header(headers, "X-Hub-Signature-256")
        if not given.startswith("sha256="):
            raise HookRefused(401, "no X-Hub-Signature-256: set the webhook's secret on GitHub")
        want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.encode(), want.encode()):
            raise HookRefused(401, "X-Hub-Signature-256 does not match the body: wrong secret, or altered on the way")
    elif provider in ("gitlab", "codeup"):
        name = "X-Gitlab-Token" if provider == "gitlab" else "X-Codeup-Token"
        given = header(headers, name)
        if not given:
            raise HookRefused(401, f"no {name}: set the webhook's secret token")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise HookRefused(401, f"{name} is not this function's secret token")
    elif provider == "gitee":
        _verify_gitee(headers, secret, time.time() if now is None else now)
    else:
        raise HookRefused(404, f"no such provider: {provider}")


def gitee_signature(timestamp: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _verify_gitee(headers: Mapping[str, str], secret: str, now: float) -> None:
    given = unquote(header(headers, "X-Gitee-Token"))
    if not given:
        raise HookRefused(401, "no X-Gitee-Token: set the webhook's password or signing secret on Gitee")
    stamp = header(headers, "X-Gitee-Timestamp")
    if stamp:  # signing mode: the signature covers the timestamp, not the body
        if not stamp.isdigit():
            raise HookRefused(401, "X-Gitee-Timestamp is not a time in milliseconds")
        if hmac.compare_digest(given.encode(), gitee_signature(stamp, secret).encode()):
            age = now - int(stamp) / 1000
            if abs(age) > GITEE_WINDOW_S:
                raise HookRefused(401, f"X-Gitee-Timestamp is {age:.0f}s off: a replayed or delayed delivery")
            return
    if hmac.compare_digest(given.encode(), secret.encode()):  # password mode
        return
    raise HookRefused(401, "X-Gitee-Token is neither this function's password nor its signature")


def replay_key(provider: str, headers: Mapping[str, str], body: bytes) -> str:
    """What makes a delivery the same delivery: the provider's delivery id, else (Gitee's signature
    does not cover the body) the signature itself, else the body's digest."""
    for name in ("X-GitHub-Delivery", "X-Gitlab-Event-UUID", "X-Gitee-Delivery", "X-Codeup-Delivery"):
        if header(headers, name):
            return f"{provider}:{header(headers, name)}"
    if provider == "gitee" and header(headers, "X-Gitee-Timestamp"):
        return f"gitee:{header(headers, 'X-Gitee-Timestamp')}:{header(headers, 'X-Gitee-Token')}"
    return f"{provider}:body:{hashlib.sha256(body).hexdigest()}"


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    kind: str  # push | delete | pull_request | ping
    repo_url: str = ""
    branch: str = ""  # push/delete: the branch; pull_request: its head branch
    tag: str = ""
    sha: str = ""
    number: int = 0
    action: str = ""  # pull_request: open | update | close
    fork: bool = False


def parse(provider: str, headers: Mapping[str, str], body: bytes) -> Event:
    """A verified delivery as an Event, or HookRefused (400) for one fcbuild does not know."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise HookRefused(400, "the body is not JSON (GitHub: set the content type to application/json)") from None
    if not isinstance(doc, dict):
        raise HookRefused(400, "the body is not a JSON object")
    try:
        if provider == "github":
            return _github(header(headers, "X-GitHub-Event"), doc)
        if provider == "gitee":
            return _gitee(header(headers, "X-Gitee-Event"), doc)
        return _gitlab(header(headers, "X-Gitlab-Event" if provider == "gitlab" else "X-Codeup-Event"), doc)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise HookRefused(
            400, f"the {provider} payload lacks what its event carries ({type(exc).__name__}: {exc})"
        ) from None


def _ref(ref: str) -> tuple[str, str]:
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :], ""
    if ref.startswith("refs/tags/"):
        return "", ref[len("refs/tags/") :]
    return ref, ""


def _github(event: str, doc: Mapping[str, Any]) -> Event:
    if event == "ping":
        return Event("ping", repo_url=str((doc.get("repository") or {}).get("clone_url", "")))
    repo = doc["repository"]["clone_url"]
    if event == "push":
        branch, tag = _ref(doc["ref"])
        kind = "delete" if doc.get("deleted") or doc.get("after") == ZERO_SHA else "push"
        return Event(kind, repo, branch, tag, "" if kind == "delete" else str(doc["after"]))
    if event == "delete":
        if doc.get("ref_type") != "branch":
            return Event("delete", repo, tag=str(doc["ref"]))
        return Event("delete", repo, branch=str(doc["ref"]))
    if event == "pull_request":
        pr = doc["pull_request"]
        actions = {"opened": "open", "reopened": "open", "synchronize": "update", "closed": "close"}
        head = pr["head"]
        fork = bool(head.get("repo")) and head["repo"].get("clone_url") != repo
        return Event(
            "pull_request", repo, str(head["ref"]), sha=str(head["sha"]), number=int(doc["number"]),
            action=actions.get(str(doc["action"]), "other:" + str(doc["action"])), fork=fork,
        )  # fmt: skip
    raise HookRefused(400, f"X-GitHub-Event {event or '(none)'!r}: fcbuild takes push, delete, pull_request and ping")


def _gitlab(event: str, doc: Mapping[str, Any]) -> Event:
    kind = doc.get("object_kind") or doc.get("event_name") or ""
    project = doc.get("project") or doc.get("repository") or {}
    repo = str(project.get("git_http_url") or project.get("http_url") or "")
    if kind in ("push", "tag_push"):
        branch, tag = _ref(str(doc["ref"]))
        after = str(doc.get("after") or doc.get("checkout_sha") or "")
        if after == ZERO_SHA or not after:
            return Event("delete", repo, branch, tag)
        return Event("push", repo, branch, tag, str(doc.get("checkout_sha") or after))
    if kind == "merge_request":
        attrs = doc["object_attributes"]
        actions = {"open": "open", "reopen": "open", "update": "update", "close": "close", "merge": "close"}
        action = str(attrs.get("action") or "")
        if action == "update" and not attrs.get("oldrev"):
            action = "edited"  # a title or label changed, no new commits
        source = attrs.get("source") or {}
        fork = bool(source) and str(source.get("git_http_url") or repo) != repo
        return Event(
            "pull_request", repo, str(attrs["source_branch"]), sha=str((attrs.get("last_commit") or {}).get("id", "")),
            number=int(attrs["iid"]), action=actions.get(action, "other:" + action), fork=fork,
        )  # fmt: skip
    if not kind and event.lower() in ("test hook", "ping"):
        return Event("ping", repo)
    raise HookRefused(
        400, f"event {event or kind or '(none)'!r}: fcbuild takes Push Hook, Tag Push Hook and Merge Request Hook"
    )


def _gitee(event: str, doc: Mapping[str, Any]) -> Event:
    hook = str(doc.get("hook_name") or "")
    repo_doc = doc.get("repository") or doc.get("project") or {}
    repo = str(repo_doc.get("clone_url") or repo_doc.get("git_http_url") or "")
    if hook in ("push_hooks", "tag_push_hooks") or event in ("Push Hook", "Tag Push Hook"):
        branch, tag = _ref(str(doc["ref"]))
        if doc.get("deleted") or doc.get("after") == ZERO_SHA:
            return Event("delete", repo, branch, tag)
        return Event("push", repo, branch, tag, str(doc["after"]))
    if hook == "merge_request_hooks" or event == "Merge Request Hook":
        pr = doc["pull_request"]
        action = str(doc.get("action") or "")
        actions = {"open": "open", "reopen": "open", "update": "update", "close": "close", "merge": "close"}
        if action == "update" and doc.get("action_desc") not in (None, "", "source_branch_changed"):
            action = "edited"
        head = pr["head"]
        head_repo = (head.get("repo") or {}).get("clone_url") or repo
        return Event(
            "pull_request", repo, str(head["ref"]), sha=str(head["sha"]), number=int(pr["number"]),
            action=actions.get(action, "other:" + action), fork=head_repo != repo,
        )  # fmt: skip
    if event in ("Ping Hook", "ping") or hook == "ping":
        return Event("ping", repo)
    raise HookRefused(
        400,
        f"X-Gitee-Event {event or hook or '(none)'!r}: fcbuild takes Push Hook, Tag Push Hook and Merge Request Hook",
    )


# --- plans ----------------------------------------------------------------------------------------


def slug(branch: str) -> str:
    """A DNS label for a branch: lowercase, every other character `-`, at most 63 characters (a short
    hash of the name when it had to be cut). A branch spelled like a pull request's slug (`pr-12`)
    gets the hash too, so that it never takes a pull request's preview."""
    text = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")
    digest = hashlib.sha256(branch.encode()).hexdigest()[:6]
    if not text or len(text) > SLUG_MAX or re.fullmatch(r"pr-\d+", text):
        text = f"{text[: SLUG_MAX - 7].rstrip('-')}-{digest}".lstrip("-")
    return text


@dataclass(frozen=True)
class Plan:
    action: str  # build | remove | ping | ignore
    reason: str = ""
    environment: str = ""  # production | preview
    slug: str = ""
    target: str = ""
    url: str = ""
    base_path: str = "/"
    ref: str = ""
    sha: str = ""
    number: int = 0


def plan(repo: Repo, event: Event) -> Plan:
    if event.kind == "ping":
        return Plan("ping", "pong")
    if event.tag:
        return Plan("ignore", f"tag {event.tag}: tags do not deploy (push the production branch)")
    if event.kind == "pull_request":
        if repo.previews is None:
            return Plan("ignore", f"{repo.id} has no previews configured")
        name = f"pr-{event.number}"
        if event.action.startswith("other:"):
            return Plan("ignore", f"pull request #{event.number} {event.action[6:] or 'event'}: nothing to build")
        if event.action == "close":
            return Plan("remove", environment="preview", slug=name, target=repo.previews.target_for(name))
        if event.fork and not repo.forks:
            return Plan(
                "ignore", f"pull request #{event.number} comes from a fork: set forks in FCBUILD_REPOS to preview those"
            )
        return _build(repo, "preview", name, event.branch, event.sha, event.number)
    if event.kind == "delete":
        if event.branch == repo.branch:
            return Plan("ignore", f"the production branch {event.branch} was deleted: the site stays as it is")
        if repo.previews is None or not repo.previews.branches:
            return Plan("ignore", f"branch {event.branch}: no branch previews")
        name = slug(event.branch)
        return Plan("remove", environment="preview", slug=name, target=repo.previews.target_for(name))
    if event.branch == repo.branch:
        return Plan("build", environment="production", target=repo.target, url="", ref=event.branch, sha=event.sha)
    if repo.previews is None or not repo.previews.branches:
        return Plan("ignore", f"branch {event.branch} is not the production branch ({repo.branch}) and has no previews")
    return _build(repo, "preview", slug(event.branch), event.branch, event.sha, 0)


def _build(repo: Repo, environment: str, name: str, ref: str, sha: str, number: int) -> Plan:
    assert repo.previews is not None
    return Plan(
        "build",
        environment=environment,
        slug=name,
        target=repo.previews.target_for(name),
        url=repo.previews.url_for(name),
        base_path=repo.previews.base_path(name),
        ref=ref,
        sha=sha,
        number=number,
    )


def build_request(repo: Repo, p: Plan) -> dict[str, Any]:
    """The build request for an asynchronous invocation of the function itself. It carries no
    credential: the clone uses the function's FCBUILD_GIT_TOKEN (for FCBUILD_GIT_HOSTS), the report
    its status token, both from the environment."""
    build: dict[str, Any] = {"environment": p.environment}
    env = dict(repo.env.get(p.environment, {}))
    if env:
        build["env"] = env
    if p.base_path != "/":
        build["base_path"] = p.base_path
    report: dict[str, Any] = {"repo": repo.id, "sha": p.sha}
    if p.number:
        report["pr"] = p.number
    if p.url:
        report["url"] = p.url
    return {
        "source": {"git": repo.url, "ref": p.ref},
        "target": p.target,
        "build": build,
        "report": report,
    }


def removal_request(repo: Repo, p: Plan) -> dict[str, Any]:
    return {"remove": {"target": p.target, "repo": repo.id}}


def find_repo(repos: tuple[Repo, ...], provider: str, url: str) -> Repo | None:
    return next((r for r in repos if r.provider == provider and same_repo(r.url, url)), None)


def preview_slug(repos: tuple[Repo, ...], target: str) -> tuple[Repo, str] | None:
    """The configured repository whose preview `target` is, with its slug."""
    for repo in repos:
        if repo.previews is not None:
            name = repo.previews.slug_of(target)
            if name is not None:
                return repo, name
    return None
