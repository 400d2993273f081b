"""A verified webhook delivery, acted on: remembered once (a provider's retry builds nothing more),
then handed to FC as an asynchronous invocation of this same function, and answered at once.

The runtime calls `handle` for `POST /hooks/<provider>[/<repo id>]` and `POST /hooks/build/<id>`;
the build itself runs later, in whichever instance FC gives the invocation, as any build request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import fc_api
import hooks
import oss_io
from context import FcContext
from errors import FcBuildError
from settings import PipelineSettings

HOOKS_DIR = ".fcbuild/hooks/"


def handle(
    ctx: FcContext,
    route: list[str],
    headers: Mapping[str, str],
    body: bytes,
    settings: PipelineSettings,
    log: Any,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer) for one delivery. `route` is the path after /hooks/."""
    try:
        if route[:1] == ["build"] and len(route) == 2:
            return _deploy_hook(ctx, route[1], settings, log)
        if not route or route[0] not in hooks.PROVIDERS:
            raise hooks.HookRefused(404, f"no such webhook: /hooks/{'/'.join(route)} (github, gitlab, gitee, codeup)")
        provider = route[0]
        named = _named_repo(settings, provider, "/".join(route[1:])) if len(route) > 1 else None
        secret_var = (named.secret_var if named and named.secret_var else "") or hooks.SECRET_VARS[provider]
        hooks.verify(provider, headers, body, settings.hook_secrets.get(secret_var, ""))
        event = hooks.parse(provider, headers, body)
        repo = named or hooks.find_repo(settings.repos, provider, event.repo_url)
        if repo is None or (named is not None and event.repo_url and not hooks.same_repo(named.url, event.repo_url)):
            raise hooks.HookRefused(404, f"{event.repo_url or 'this repository'} is not one FCBUILD_REPOS configures")
        plan = hooks.plan(repo, event)
    except hooks.HookRefused as refused:
        log.warning("webhook refused (%d): %s", refused.status, refused)
        return refused.status, {"error": _error_name(refused.status), "message": str(refused)}
    if plan.action == "ping":
        log.info("webhook ping from %s for %s", provider, repo.id)
        return 200, {"ok": True, "repo": repo.id, "message": "pong"}
    if plan.action == "ignore":
        log.info("webhook from %s for %s ignored: %s", provider, repo.id, plan.reason)
        return 202, {"ignored": True, "repo": repo.id, "reason": plan.reason}
    request = hooks.build_request(repo, plan) if plan.action == "build" else hooks.removal_request(repo, plan)
    return _start(ctx, repo, plan, request, hooks.replay_key(provider, headers, body), settings, log)


def _error_name(status: int) -> str:
    return {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 413: "TooLarge"}.get(
        status, "Refused"
    )


def _named_repo(settings: PipelineSettings, provider: str, rid: str) -> hooks.Repo:
    repo = next((r for r in settings.repos if r.provider == provider and r.id == rid), None)
    if repo is None:
        raise hooks.HookRefused(404, f"/hooks/{provider}/{rid}: no repository with that id in FCBUILD_REPOS")
    return repo


def _deploy_hook(ctx: FcContext, given: str, settings: PipelineSettings, log: Any) -> tuple[int, dict[str, Any]]:
    """`POST /hooks/build/<id>`: the id is the secret (at least 20 characters, from the variable a
    repository's `deploy_hooks` names); it builds that hook's branch, as a push would."""
    found = None
    for repo in settings.repos:
        for var, branch in repo.deploy_hooks:
            wanted = settings.hook_secrets.get(var, "")
            if len(wanted) >= hooks.MIN_DEPLOY_HOOK_ID and hmac.compare_digest(given.encode(), wanted.encode()):
                found = (repo, branch)
    if found is None:
        log.warning("deploy hook refused: no hook has that id")
        return 404, {"error": "NotFound", "message": "no deploy hook has that id"}
    repo, branch = found
    plan = hooks.plan(repo, hooks.Event("push", repo.url, branch))
    if plan.action != "build":
        return 202, {"ignored": True, "repo": repo.id, "reason": plan.reason}
    request = hooks.build_request(repo, plan)
    log.info("deploy hook for %s, branch %s", repo.id, branch)
    return _start(ctx, repo, plan, request, "", settings, log)


def _start(
    ctx: FcContext,
    repo: hooks.Repo,
    plan: hooks.Plan,
    request: dict[str, Any],
    replay: str,
    settings: PipelineSettings,
    log: Any,
) -> tuple[int, dict[str, Any]]:
    storage = oss_io.OssClient.for_request(ctx, settings, log)
    bucket, _, prefix = repo.target[len("oss://") :].partition("/")
    marker = f"{prefix}{HOOKS_DIR}{hashlib.sha256(replay.encode()).hexdigest()[:40]}.json" if replay else ""
    answer = {"repo": repo.id, "action": plan.action, "environment": plan.environment, "target": plan.target}
    if plan.url:
        answer["url"] = plan.url
    try:
        if marker:
            first = storage.put_json_if_absent(bucket, marker, {"receivedAt": time.time(), "requestId": ctx.request_id})
            if not first:
                earlier = storage.get_json(bucket, marker) or {}
                log.info("webhook delivery seen before (request %s): nothing started", earlier.get("invocation", "?"))
                return 200, {**answer, "duplicate": True, "requestIds": [earlier.get("invocation", "")]}
        try:
            invocation = fc_api.invoke_async(ctx, json.dumps(request).encode(), settings.fc_endpoint)
        except FcBuildError:
            if marker:  # let the provider's retry try again
                storage.delete_objects(bucket, [marker])
            raise
        if marker:
            storage.put_json(bucket, marker, {"receivedAt": time.time(), "invocation": invocation}, private=True)
    except FcBuildError as exc:
        log.error("webhook for %s: %s: %s", repo.id, exc.error_type, exc)
        return 502, {"error": exc.error_type, "message": str(exc), **answer}
    log.info("webhook for %s: %s %s queued as request %s", repo.id, plan.action, plan.target, invocation)
    return 202, {**answer, "requestIds": [invocation]}
