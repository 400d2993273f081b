"""The job behind /invoke: source from OSS, install and build with Node.js, deploy the output to OSS.

    workspace -> source (download, safe extract) -> toolchain (Node, package manager)
    -> install -> build -> deploy (assets, then entry HTML, then the manifest)

Each step is timed and logged with the request id. Knows nothing of HTTP; all OSS I/O goes
through the `storage` client it is given (an `oss_io.OssClient`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import glob
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import deployer
import egress
import frameworks
import git_source
import node_dist
import notify
import oss_io
import sandbox
import triggers
from archive import Limits, extract_archive, inside, read_archive_member, safe_member_path
from build_request import (
    BuildJob,
    GitSource,
    OssLocation,
    ReleaseRequest,
    SiteRequest,
    is_release_request,
    is_site_request,
    parse_job,
    parse_release_request,
    parse_site_request,
)
from build_runner import BuildLog, Containment, Runner
from context import FcContext, redact
from dep_cache import BuildCache, WarmCache, nested_trees
from deploy_plan import OutputRefused, is_content_hashed, scan_tree
from errors import (
    AccessDenied,
    BuildFailed,
    Busy,
    DiskFull,
    FcBuildError,
    InvalidOutput,
    InvalidRequest,
    InvalidSource,
    NotAvailable,
    SourceNotFound,
    with_message,
)
from settings import PipelineSettings, library_path
from tool_cache import PackageManagerReleases
from toolchain import (
    LOCKFILES,
    BuildPaths,
    NodeInstall,
    PackageManager,
    build_argv,
    child_env,
    choose_node,
    committed_yarn,
    detect_package_manager,
    find_output_dir,
    node_requirement,
    parse_version,
    plan_npm,
    read_package_json,
)

logger = logging.getLogger(__name__)
META_DIR = ".fcbuild/"  # under the target prefix: the manifest and build logs of this site
RETRY_POLL_S = 2.0  # how often a retry looks at its earlier attempt's status
LIVE_LOG_S = 2.0  # how often the build log in OSS is brought up to date while the build runs


def build_uids(settings: PipelineSettings) -> list[int] | None:
    """The build users' uids when the runtime is root (one per slot), else None."""
    if not sandbox.is_root():
        return None
    first, _ = settings.build_uids
    return [first + i for i in range(settings.max_builds)]


class Instance:
    """What outlives one invocation on this instance: the build slots (and their users), the
    processes builds start, a lock per target (builds of one target run one at a time here, at
    the same path), the caches, and work left running in the background (flushed at stop).
    Made once by the runtime and kept on its server object."""

    def __init__(
        self,
        settings: PipelineSettings,
        children: Any,
        known_secrets: Callable[[], tuple[str, ...]] = lambda: (),
        log: Any = logger,
    ) -> None:
        self.settings = settings
        self.children = children
        self.known_secrets = known_secrets  # every credential the runtime has seen: redacted everywhere
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, str], threading.Lock] = {}
        self._background: list[threading.Thread] = []
        sandbox.ensure_root(settings.workspace_root)
        uids = build_uids(settings)
        if uids is not None:
            for problem in sandbox.ensure_accounts(uids):
                log.warning("%s", problem)
        self.slots = sandbox.Slots(settings.max_builds, uids)
        self.build_uid_set = frozenset(uids or ())
        self.containment = Containment(children)
        self.warm_cache = WarmCache(os.path.join(settings.workspace_root, "cache", "deps"), settings.cache_max_bytes)
        self.releases = PackageManagerReleases(os.path.join(settings.workspace_root, "tools", "corepack"))
        self.node_releases = node_dist.NodeReleases(
            os.path.join(settings.workspace_root, "tools", "node"), tls=node_dist.registry_tls(settings.launch_env)
        )
        self._official: dict[str, str] = {}

    def official_registry(self, node_bin: str) -> str:
        """The registry npm uses when nothing names another (asked of npm itself, once per Node)."""
        with self._lock:
            if node_bin not in self._official:
                self._official[node_bin] = _npm_default_registry(node_bin, self.settings.launch_env)
            return self._official[node_bin]

    def target_lock(self, bucket: str, prefix: str) -> threading.Lock:
        with self._lock:
            return self._targets.setdefault((bucket, prefix), threading.Lock())

    @contextlib.contextmanager
    def target_turn(self, bucket: str, prefix: str, what: str) -> Iterator[None]:
        """This target's turn for a rollback or removal (`what`), within FCBUILD_QUEUE_WAIT_S, else Busy."""
        wait = self.settings.queue_wait_s
        lock = self.target_lock(bucket, prefix)
        if not lock.acquire(timeout=wait):
            where = f"oss://{bucket}/{prefix}"
            raise Busy(f"a build of {where} kept this instance busy for {wait}s; retry {what} when it has finished")
        try:
            yield
        finally:
            lock.release()

    def in_background(self, name: str, work: Any) -> None:
        thread = threading.Thread(target=work, name=name, daemon=True)
        with self._lock:
            self._background = [t for t in self._background if t.is_alive()] + [thread]
        thread.start()

    def flush(self, timeout: float) -> int:
        """Wait for background work, at most `timeout` seconds. Returns how much is still running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pending = list(self._background)
        for thread in pending:
            thread.join(max(0.0, deadline - time.monotonic()))
        return sum(t.is_alive() for t in pending)

    def end_all(self) -> int:
        """At stop: no process any build started survives the runtime."""
        uids = build_uids(self.settings)
        if uids is None:
            return sandbox.end_descendants(())
        return sum(sandbox.end_uid(uid, uid) for uid in uids)


def handle_invoke(ctx: FcContext, event: Mapping[str, Any], *, instance: Instance, log: Any) -> dict[str, Any]:
    """The one entry point the runtime calls: validate, then build and deploy.

    Every build records its status in OSS (`<prefix>.fcbuild/status/<request id>.json`: running,
    then succeeded with the result or failed with the error). A retried request (FC's
    `x-fc-retry-count` above 0, or any asynchronous invocation) whose id already succeeded is
    answered from that status without building or deploying again; one whose earlier attempt
    may still be running waits for it to end (or to pass the function's timeout) first. The
    request's `notify` targets hear how it ended.
    """
    if is_release_request(event):
        return _release_request(ctx, parse_release_request(event), instance=instance, log=log)
    if is_site_request(event):
        return _site_request(ctx, parse_site_request(event), instance=instance, log=log)
    if triggers.is_time_trigger(event):
        log.info("time trigger %s at %s", event.get("triggerName"), event.get("triggerTime"))
        event = triggers.time_trigger_request(event)
    if triggers.is_oss_event(event):
        return _oss_events(ctx, event, instance=instance, log=log)
    job = parse_job(event)
    triggers.check_allowed(job.target.bucket, job.target.prefix, instance.settings.allowed_targets)
    if job.report is not None and _report_repo(job, instance.settings) is None:
        raise InvalidRequest(f"report.repo: {job.report.repo!r} is not a repository FCBUILD_REPOS configures")
    return _build_with_outcome(ctx, job, instance=instance, log=log)


def _report_repo(job: BuildJob, settings: PipelineSettings) -> Any:
    return next((r for r in settings.repos if job.report is not None and r.id == job.report.repo), None)


class _CommitReport:
    """Tells a webhook build's commit how it goes: pending, then success with the site's URL or
    failure with the cause's first line. Off where no status token is set."""

    def __init__(self, job: BuildJob, settings: PipelineSettings, log: Any) -> None:
        import hooks

        self.log, self.sent = log, []
        self.report = None
        repo = _report_repo(job, settings)
        if repo is None or job.report is None or not job.report.sha:
            return
        token = settings.hook_secrets.get(hooks.STATUS_TOKEN_VARS[repo.provider], "")
        api = repo.api or hooks.DEFAULT_APIS[repo.provider]
        if not token or not api:
            log.info(
                "commit status: no %s (or API) set: the commit is not told", hooks.STATUS_TOKEN_VARS[repo.provider]
            )
            return
        import commit_status

        self.url = job.report.url
        self.report = commit_status.Report(
            repo.provider,
            api,
            token,
            repo.id,
            repo.project_id,
            job.report.sha,
            job.report.pr,
            repo.codeup_organization() if repo.provider == "codeup" else "",
        )

    def send(self, state: str, description: str, url: str = "") -> None:
        if self.report is None:
            return
        import commit_status

        self.sent.append(commit_status.send(self.report, state, url or self.url, description, self.log))


def _site_request(ctx: FcContext, req: SiteRequest, *, instance: Instance, log: Any) -> dict[str, Any]:
    """Remove a preview (a closed pull request, a deleted branch), or prune the previews not
    deployed for a number of days. Only a configured repository's preview folders are ever removed."""
    import hooks

    settings = instance.settings
    storage = oss_io.OssClient.for_request(ctx, settings, log)
    claim = deployer.Claim(ctx.request_id, ctx.started_wall)
    if req.action == "remove":
        assert req.target is not None
        url = req.target.url()
        found = hooks.preview_slug(settings.repos, url)
        if found is None:
            raise AccessDenied(f"remove.target: {url} is not a preview folder of a repository FCBUILD_REPOS configures")
        triggers.check_allowed(req.target.bucket, req.target.prefix, settings.allowed_targets)
        return {
            "requestId": ctx.request_id,
            "status": "succeeded",
            **_remove(storage, req.target, claim, ctx, instance, log),
        }
    cutoff = time.time() - req.older_than_days * 86400
    removed, kept = [], 0
    for repo in settings.repos:
        if repo.previews is None:
            continue
        root = repo.previews.root()
        bucket, _, prefix = root[len("oss://") :].partition("/")
        for obj in storage.list_objects(bucket, prefix):
            rest = obj.key[len(prefix) :]
            folder, _, tail = rest.partition("/")
            if tail != deployer.META_DIR + "manifest.json":
                continue
            site = f"oss://{bucket}/{prefix}{folder}/"
            if repo.previews.slug_of(site) is None:
                continue
            when = deployer.last_deployed(storage, deployer.Target(bucket, prefix + folder + "/"))
            if when is not None and when >= cutoff:
                kept += 1
                continue
            location = OssLocation(bucket, prefix=prefix + folder + "/")
            removed.append(_remove(storage, location, claim, ctx, instance, log))
    log.info("prune: %d previews removed, %d kept", len(removed), kept)
    return {"requestId": ctx.request_id, "status": "succeeded", "removed": removed, "kept": kept}


def _remove(
    storage: oss_io.OssClient, location: OssLocation, claim: Any, ctx: FcContext, instance: Instance, log: Any
) -> dict[str, Any]:
    with instance.target_turn(location.bucket, location.prefix, "the removal"):
        return deployer.remove_site(
            storage, deployer.Target(location.bucket, location.prefix), claim=claim, deadline=ctx.deadline, log=log
        )


def _oss_events(ctx: FcContext, event: Mapping[str, Any], *, instance: Instance, log: Any) -> dict[str, Any]:
    """An OSS trigger: build each created archive, each under its own request id (`<id>-<n>` when
    there are several), and answer every event's result. If any failed, the answer is that failure
    (FC may retry: the events that succeeded are then replayed, not rebuilt)."""
    sources = triggers.oss_event_sources(event)
    storage = oss_io.OssClient.for_request(ctx, instance.settings, log)
    results: list[dict[str, Any]] = []
    first_failure: FcBuildError | None = None
    for i, (source, why) in enumerate(sources):
        if source is None:
            log.info("event %d: %s", i, why)
            results.append({"event": i, "skipped": why})
            continue
        url = f"oss://{source['bucket']}/{source['key']}"
        one = dataclasses.replace(ctx, request_id=f"{ctx.request_id}-{i}") if len(sources) > 1 else ctx
        try:
            target, came = _trigger_target(source, instance, storage, log)
            job = parse_job({"source": source, "target": target})
            triggers.check_allowed(job.target.bucket, job.target.prefix, instance.settings.allowed_targets)
            log.info("event %d: building %s for %s (target from %s)", i, url, target, came)
            result = _build_with_outcome(one, job, instance=instance, log=log)
            results.append({"event": i, "source": url, **result})
        except FcBuildError as exc:
            secrets = (*instance.known_secrets(), *ctx.secrets())
            results.append(
                {"event": i, "source": url, "errorType": exc.error_type, "errorMessage": redact(str(exc), secrets)}
            )
            first_failure = first_failure or exc
    if first_failure is not None:
        raise type(first_failure)(json.dumps({"events": results}, ensure_ascii=False))
    return {"requestId": ctx.request_id, "events": results}


def _trigger_target(
    source: Mapping[str, str], instance: Instance, storage: oss_io.OssClient, log: Any
) -> tuple[str, str]:
    """The target of an uploaded archive: its fcbuild.json's, else FCBUILD_TARGET's; and which."""
    config = _archive_config(source, instance.settings, storage)
    if config is not None and config.get("target"):
        target = config["target"]
        if not isinstance(target, str | dict):
            raise InvalidSource(f"{triggers.CONFIG_FILE}: target: expected oss://bucket/prefix/ or an object")
        return target if isinstance(target, str) else f"oss://{target.get('bucket')}/{target.get('prefix', '')}", (
            triggers.CONFIG_FILE
        )
    if instance.settings.target_template:
        return triggers.target_from_template(instance.settings.target_template, source["bucket"], source["key"]), (
            "FCBUILD_TARGET"
        )
    raise InvalidRequest(
        f"oss://{source['bucket']}/{source['key']}: no target: put one in the project's {triggers.CONFIG_FILE} "
        '("target": "oss://bucket/prefix/") or set the function\'s FCBUILD_TARGET (e.g. oss://my-site/{name}/)'
    )


def _archive_config(source: Mapping[str, str], settings: PipelineSettings, storage: oss_io.OssClient) -> dict | None:
    """fcbuild.json from an archive in OSS (at its root, or in its only top folder), without extracting it."""
    os.makedirs(os.path.join(settings.workspace_root, "cache"), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.join(settings.workspace_root, "cache")) as scratch:
        archive = os.path.join(scratch, "source")
        storage.download_file(source["bucket"], source["key"], archive, max_bytes=settings.max_archive_bytes)
        data = read_archive_member(archive, triggers.CONFIG_FILE, triggers.MAX_CONFIG_BYTES)
    return None if data is None else triggers.parse_config(data)


def _build_with_outcome(ctx: FcContext, job: BuildJob, *, instance: Instance, log: Any) -> dict[str, Any]:
    """One build with its status object, retry replay and notifications."""
    storage = oss_io.OssClient.for_request(ctx, instance.settings, log)
    bucket, key = job.target.bucket, status_key(job, ctx.request_id)
    if ctx.retry_count > 0 or ctx.invocation_type == "Async":
        replay = _earlier_attempt(ctx, storage, bucket, key, log)
        if replay is not None:
            return replay
    merged = [job]  # the job with the project's fcbuild.json, once the source is there: its notify too

    def secrets() -> tuple[str, ...]:
        return (*instance.known_secrets(), *ctx.secrets(), *merged[0].secret_values())

    def configured(with_file: BuildJob) -> None:
        merged[0] = with_file
        notifier.targets = list(with_file.notify)

    allowed = instance.settings.allow_private_nets
    notifier = notify.Notifier(job.notify, lambda text: redact(text, secrets()), log, allowed)
    status = {
        "requestId": ctx.request_id,
        "attempt": ctx.retry_count + 1,
        "invocationType": ctx.invocation_type,
        "startedAt": _utc(ctx.started_wall),
        "startedAtEpoch": ctx.started_wall,
    }
    _put_quietly(storage, bucket, key, {**status, "status": "running"}, log)
    commit = _CommitReport(job, instance.settings, log)
    commit.send("pending", f"building {job.environment} ({ctx.request_id})")
    try:
        result = run_build(ctx, job, instance=instance, storage=storage, log=log, configured=configured)
    except Exception as exc:
        error_type = exc.error_type if isinstance(exc, FcBuildError) else "Internal"
        failure = {"errorType": error_type, "errorMessage": redact(str(exc), secrets())}
        commit.send("failure", f"{error_type}: {failure['errorMessage']}")
        _put_quietly(storage, bucket, key, {**status, "status": "failed", "finishedAt": _utc(), "error": failure}, log)
        notifier.send(_outcome(ctx, merged[0], None, failure))
        notifier.wait()
        raise
    commit.send("success", f"deployed {job.environment} (release {result.get('release', ctx.request_id)})")
    if commit.sent:
        result["commitStatus"] = commit.sent
    if job.report is not None and job.report.url:
        result["url"] = job.report.url
    _put_quietly(storage, bucket, key, {**status, "status": "succeeded", "finishedAt": _utc(), "result": result}, log)
    if merged[0].notify:
        notifier.send(_outcome(ctx, merged[0], result, None))
        result["notifications"] = notifier.wait()
    return result


def _earlier_attempt(
    ctx: FcContext, storage: oss_io.OssClient, bucket: str, key: str, log: Any
) -> dict[str, Any] | None:
    """A retry: the earlier attempt's result if it succeeded; None to build (it failed, or never
    finished within the function's timeout). While it may still be running, wait for it."""
    poll_until = ctx.deadline - 30
    while True:
        earlier = storage.get_json(bucket, key)
        if not isinstance(earlier, dict):
            return None
        state = earlier.get("status")
        if state == "succeeded" and isinstance(earlier.get("result"), dict):
            log.info(
                "request %s already deployed at %s; not deploying again", ctx.request_id, earlier.get("finishedAt")
            )
            return {**earlier["result"], "replayed": True}
        if state != "running":
            log.info("request %s: the earlier attempt %s; building again", ctx.request_id, state)
            return None
        try:
            age = time.time() - float(earlier.get("startedAtEpoch", 0))
        except (TypeError, ValueError):
            age = float("inf")
        if age > ctx.timeout_s + 60:
            log.info("request %s: the earlier attempt never finished (%.0fs ago); building again", ctx.request_id, age)
            return None
        if time.monotonic() > poll_until:
            raise Busy(f"request {ctx.request_id}: an earlier attempt is still running ({age:.0f}s); retry later")
        log.info("request %s: an earlier attempt is still running (%.0fs); waiting for it", ctx.request_id, age)
        time.sleep(RETRY_POLL_S)


def _outcome(
    ctx: FcContext, job: BuildJob, result: Mapping[str, Any] | None, failure: Mapping[str, str] | None
) -> notify.Outcome:
    target = f"oss://{job.target.bucket}/{job.target.prefix}"
    duration = time.monotonic() - ctx.started_at
    if result is not None:
        domains = job.cdn.domains if job.cdn is not None else ()
        path = (job.cdn.path if job.cdn is not None and job.cdn.path is not None else job.target.prefix) or ""
        scheme = job.cdn.scheme if job.cdn is not None else "https"
        return notify.Outcome(
            "succeeded",
            ctx.request_id,
            target,
            site_urls=tuple(f"{scheme}://{d}/{path}" for d in domains),
            duration_s=duration,
            files_changed=int(result.get("files", {}).get("uploaded", 0)),
            release=str(result.get("release", "")),
            result=result,
        )
    assert failure is not None
    lines = failure["errorMessage"].splitlines()
    if "Cause:" in lines:  # a failed step: its cause, not its command line
        at = lines.index("Cause:") + 1
        lines = [lines[0].split(". Cause", 1)[0], *lines[at : at + 3]]
    cause = "\n".join(lines[:6])[:1500]
    return notify.Outcome(
        "failed", ctx.request_id, target, duration_s=duration, error_type=failure["errorType"], cause=cause
    )


def _release_request(ctx: FcContext, req: ReleaseRequest, *, instance: Instance, log: Any) -> dict[str, Any]:
    """List a target's kept releases, or roll it back to one: no install, no build."""
    triggers.check_allowed(req.target.bucket, req.target.prefix, instance.settings.allowed_targets)
    storage = oss_io.OssClient.for_request(ctx, instance.settings, log)
    target = deployer.Target(req.target.bucket, req.target.prefix)
    where = f"oss://{target.bucket}/{target.prefix}"
    if req.action == "list":
        return {"requestId": ctx.request_id, "target": where, "releases": deployer.list_releases(storage, target)}
    # "previous" is the release before the one live now, and the rollback is as new as its request:
    # a deploy asked for after it wins, one asked for before it does not.
    which = deployer.previous_release(storage, target) if req.release == "previous" else req.release
    with instance.target_turn(target.bucket, target.prefix, "the rollback"):
        result = deployer.rollback(
            storage,
            target,
            which,
            claim=deployer.Claim(ctx.request_id, ctx.started_wall),
            deadline=ctx.deadline,
            log=log,
        )
    return {"requestId": ctx.request_id, "status": "succeeded", **result}


def _put_quietly(storage: oss_io.OssClient, bucket: str, key: str, doc: dict, log: Any) -> None:
    try:
        storage.put_json(bucket, key, doc, private=True)
    except FcBuildError as exc:
        log.warning("could not write the status oss://%s/%s: %s", bucket, key, exc)


def _utc(when: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def meta_keys(job: BuildJob, request_id: str) -> tuple[str, str]:
    base = job.target.prefix + META_DIR
    return base + "manifest.json", f"{base}logs/{_safe_name(request_id)}.log"


def status_key(job: BuildJob, request_id: str) -> str:
    return f"{job.target.prefix}{META_DIR}status/{_safe_name(request_id)}.json"


def site_id(job: BuildJob) -> str:
    """A target's name on this instance's disk: its workspace and its caches."""
    return hashlib.sha256(f"{job.target.bucket}\0{job.target.prefix}".encode()).hexdigest()[:20]


@contextlib.contextmanager
def _turn(instance: Instance, job: BuildJob, site: str, log: Any) -> Iterator[sandbox.Slot]:
    """Wait for this target's turn (one build of a target at a time here), then for a build slot;
    both within FCBUILD_QUEUE_WAIT_S, else Busy."""
    wait = instance.settings.queue_wait_s
    started = time.monotonic()
    lock = instance.target_lock(job.target.bucket, job.target.prefix)
    if not lock.acquire(timeout=wait):
        raise Busy(
            f"another build of oss://{job.target.bucket}/{job.target.prefix} kept this instance busy for {wait}s "
            "(FCBUILD_QUEUE_WAIT_S); retry when it has finished"
        )
    try:
        left = max(0.0, wait - (time.monotonic() - started))
        site_caches = os.path.join(instance.settings.workspace_root, "cache", "sites", site)
        slot = instance.slots.acquire(left, prefer_uid=lambda: sandbox.tree_owner(site_caches))
        try:
            waited = time.monotonic() - started
            if waited > 1:
                log.info("waited %.1fs for a build slot", waited)
            yield slot
        finally:
            instance.slots.release(slot)
    finally:
        lock.release()


def run_build(
    ctx: FcContext,
    job: BuildJob,
    *,
    instance: Instance,
    storage: oss_io.OssClient,
    log: Any,
    configured: Callable[[BuildJob], None] | None = None,
) -> dict[str, Any]:
    """`configured` is told the job as the project's fcbuild.json completes it (its notify list)."""
    started = time.monotonic()
    site = site_id(job)
    with _turn(instance, job, site, log) as slot:
        result = _run_in_slot(
            ctx, job, instance=instance, storage=storage, log=log, slot=slot, site=site, configured=configured
        )
    result["queueSeconds"] = round(result.pop("_started") - started, 3)
    result["durationSeconds"] = round(time.monotonic() - started, 3)
    return result


def _run_in_slot(
    ctx: FcContext,
    job: BuildJob,
    *,
    instance: Instance,
    storage: oss_io.OssClient,
    log: Any,
    slot: sandbox.Slot,
    site: str,
    configured: Callable[[BuildJob], None] | None = None,
) -> dict[str, Any]:
    settings = instance.settings
    started = time.monotonic()
    steps = _Steps(log)
    manifest_key, log_key = meta_keys(job, ctx.request_id)
    target = job.target

    def secrets() -> tuple[str, ...]:
        return (*instance.known_secrets(), *ctx.secrets(), *job.secret_values())

    deadline = ctx.deadline - settings.upload_margin_s
    if job.timeout_s:
        deadline = min(deadline, started + job.timeout_s)
    with steps.step("workspace"):
        paths = _make_workspace(settings, site, instance, log)
    log.info("building in %s as %s", paths.workspace, slot.describe())
    build_log = BuildLog(os.path.join(paths.workspace, "build.log"), secrets, log, settings.log_max_bytes)
    cache = BuildCache(
        instance.settings,
        instance.warm_cache,
        instance.in_background,
        storage,
        paths.workspace,
        oss_location=_cache_location(job, instance.settings),
        site=f"{site}:{job.root}" if job.root else site,  # one workspace package's trees
        log=log,
        run_as=(slot.uid, slot.gid) if slot.isolated and slot.uid is not None and slot.gid is not None else None,
        launch_env=instance.settings.launch_env,
    )
    tools: dict[str, Any] = {}
    isolation = _Timer()
    run: Runner | None = None
    live_log = _LivePublisher(storage, target.bucket, log_key, build_log, log)  # stopped in the finally below
    try:
        with steps.step("source"):
            project, source_info = _fetch_source(job, paths.workspace, settings, storage, log)
            with isolation:
                _hand_over(paths, project, slot, instance, site)
        with steps.step("toolchain"):
            job, config_came = _with_project_config(job, project)
            if configured is not None:
                configured(job)
            package_dir = _package_dir(project, job.root)
            package = read_package_json(package_dir)
            root_package = read_package_json(project) if package_dir != project else package
            if package_dir != project:
                _check_workspace(project, package_dir, package, job.root or "")
            pm, node, node_from = _choose_toolchain(project, root_package, job, instance, storage, log)
            registry = job.registry or settings.npm_registry
            if job.registry:  # the request's (or fcbuild.json's) own: corepack fetches from it as root
                egress.check_url(job.registry, "build.registry", settings.allow_private_nets)
            signatures = settings.corepack_signatures and (
                not registry or registry.rstrip("/") == instance.official_registry(node.bin_dir)
            )
            if pm.via_corepack:
                release = pm.release
                pm, tools = instance.releases.ensure(
                    pm, node.bin_dir, settings.launch_env, registry, log, signatures=signatures
                )
                paths = dataclasses.replace(paths, corepack_home=tools.pop("home"))
                log.info("package manager %s %s runs (corepack, for %s)", pm.name, pm.version, release)
            framework = frameworks.detect(package)
            base_args, base_env = frameworks.base_path_setting(framework, job.base_path, pm.name == "npm")
            env = child_env(
                settings.launch_env,
                node.bin_dir,
                paths,
                package_manager=pm.name,
                registry=registry,
                extra={"DEPLOY_ENV": job.environment, **base_env, **job.env, **job.secrets},
                user=f"fcbuild{slot.uid}" if slot.isolated else "",
                signatures=signatures,
            )
            command = job.command or (*build_argv(pm, package, framework), *base_args)
            if job.base_path != "/":
                how = " ".join(base_args) or ", ".join(f"{k}={v}" for k, v in base_env.items())
                log.info("served under %s: %s", job.base_path, how)
            if framework is not None:
                log.info(
                    "framework %s: %s, output %s%s",
                    framework.name,
                    "the request's command" if job.command else " ".join(command),
                    job.output_dir or framework.output,
                    " (from the request)" if job.output_dir else "",
                )
            if package_dir != project and not job.command:
                runner = next((n for n in ("turbo.json", "nx.json") if os.path.exists(os.path.join(project, n))), "")
                if runner:
                    log.info(
                        "the workspace uses %s; running the package's own build script (%s in %s): give "
                        'build.command with build.command_cwd "root" to run the task runner instead',
                        "Turborepo" if runner == "turbo.json" else "Nx",
                        " ".join(command),
                        job.root,
                    )
            build_cwd = project if job.command_cwd == "root" else package_dir
        cache.project = project
        with steps.step("cache"):
            cache.restore(pm, node)
            with isolation:
                _own_restored_tree(project, slot, instance, warm=cache.outcome.hit == "warm")
        run = Runner(
            project,
            env,
            deadline,
            instance.containment,
            slot,
            build_log,
            log,
            max_procs=settings.build_max_procs,
            max_open_files=settings.build_max_open_files,
        )
        with steps.step("install"):
            _install(run, job, pm, project, restored=cache.outcome.hit in ("warm", "oss"), log=log)
            cache.installed = True
        public_index = os.path.join(package_dir, "public", "index.html")
        public_before = os.stat(public_index).st_mtime_ns if os.path.exists(public_index) else None
        with steps.step("build"):
            run("build", command, cwd=build_cwd)
        public_written = os.path.exists(public_index) and os.stat(public_index).st_mtime_ns != public_before
        with steps.step("deploy"):
            output = _output_dir(package_dir, job.output_dir, project, framework, public_written)
            if job.require_index:
                _check_index(output, project)
            files = _scan_output(output, slot.uid, settings, job.target.prefix)
            report = deployer.deploy(
                storage,
                deployer.Target(target.bucket, target.prefix, job.keep_releases),
                output,
                files,
                claim=deployer.Claim(ctx.request_id, ctx.started_wall),
                record=_provenance(job, source_info, pm, node, project, command, output),
                cache_rules=job.cache_control,
                deadline=ctx.deadline,
                log=log,
            )
        warnings = prefix_warnings(output, job.base_path.lstrip("/") if job.base_path != "/" else target.prefix)
        warnings += deep_link_warnings(output, framework, package)
        for warning in warnings:
            log.warning("%s", warning)
        cdn_report = None
        if job.cdn is not None:
            with steps.step("cdn"):
                cdn_report = _refresh_cdn(ctx, job, report.changed, settings, log)
        live_log.stop()
        saved = _save_log(storage, target.bucket, log_key, build_log, log)
        _keep_quietly(cache, to_oss=True, log=log)
    except (FcBuildError, OSError) as exc:
        failure = _as_failure(exc, steps, settings)
        if failure is None:
            _keep_quietly(cache, to_oss=False, ok=False, log=log)
            raise
        live_log.stop()
        saved = _save_log(storage, target.bucket, log_key, build_log, log)
        _keep_quietly(cache, to_oss=False, ok=False, log=log)
        raise with_message(failure, f"{failure}\n(build log: {saved})" if saved else str(failure)) from exc
    except BaseException:
        _keep_quietly(cache, to_oss=False, ok=False, log=log)
        raise
    finally:
        live_log.stop()
        build_log.close()
        with isolation:
            _clean_up(paths, slot, instance, site, settings, log)
        if not settings.keep_workspace:
            sandbox.remove_tree(paths.workspace)
        if run is not None:
            isolation.seconds += run.isolation_seconds
    return {
        "requestId": ctx.request_id,
        "status": "succeeded",
        "source": job.source.url(),
        "target": f"oss://{target.bucket}/{target.prefix}",
        "packageManager": pm.describe(),
        "node": {"version": node.version_text, "path": node.bin_dir, **node_from},
        "outputDir": os.path.relpath(output, package_dir),
        **({"config": config_came} if config_came else {}),
        **({"commit": source_info["commit"]} if "commit" in source_info else {}),
        **({"framework": _framework_doc(framework, job, command)} if framework is not None else {}),
        **({"root": job.root} if job.root else {}),
        "steps": steps.times,
        "durationSeconds": 0.0,
        "_started": started,
        "isolation": {"slot": slot.index, "uid": slot.uid, "seconds": round(isolation.seconds, 4)},
        "cache": cache.outcome.as_dict(),
        **({"tools": tools} if tools else {}),
        **({"cdn": cdn_report.as_dict()} if cdn_report is not None else {}),
        "release": ctx.request_id,
        **({"warnings": warnings} if warnings else {}),
        "files": report.as_dict(),
        "releases": {"kept": job.keep_releases, "deletedObjects": report.deleted},
        "manifest": f"oss://{target.bucket}/{manifest_key}",
        "log": saved,
    }


def _as_failure(exc: BaseException, steps: _Steps, settings: PipelineSettings) -> FcBuildError | None:
    """The error to answer with: fcbuild's own, or DiskFull for a full disk anywhere; None for
    anything else (answered Internal)."""
    if isinstance(exc, FcBuildError):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = exc.filename or settings.workspace_root
        return DiskFull(
            f"the disk filled during the {steps.current or 'workspace'} step (writing {where}): "
            "raise the function's disk size"
        )
    return None


def _keep_quietly(cache: BuildCache, *, to_oss: bool, log: Any, ok: bool = True) -> None:
    """The cache never turns a result into a failure (a full disk included)."""
    try:
        cache.keep(to_oss=to_oss, ok=ok)
    except OSError as exc:
        log.warning("dependency cache not kept: %s", exc)


def _with_project_config(job: BuildJob, project: str) -> tuple[BuildJob, dict[str, list[str]]]:
    """The project's fcbuild.json under the request: the request wins field by field. The file is
    checked with the request's rules, and its errors name the file."""
    path = os.path.join(project, triggers.CONFIG_FILE)
    if not os.path.isfile(path) or os.path.islink(path):
        return job, {}
    with open(path, "rb") as f:
        config = triggers.parse_config(f.read(triggers.MAX_CONFIG_BYTES + 1))
    probe = {
        "source": "oss://bucket-of-the-request/source.tar.gz",
        "target": config.get("target") or "oss://bucket-of-the-request/",
    }
    try:
        parse_job({**{k: v for k, v in config.items() if k != "target"}, **probe})
    except InvalidRequest as exc:
        raise InvalidSource(f"{triggers.CONFIG_FILE}: {exc}") from None
    merged, came = triggers.merge_config(job.event, {k: v for k, v in config.items() if k != "target"})
    return parse_job(merged), came


def _framework_doc(framework: frameworks.Framework, job: BuildJob, command: tuple[str, ...]) -> dict[str, Any]:
    """What the framework table chose (and what the request overrode)."""
    return {
        "name": framework.name,
        "command": " ".join(command),
        "commandFrom": "request" if job.command else "table",
        "outputFrom": "request" if job.output_dir else "table",
        "singlePageApp": framework.spa,
        "prefixSetting": framework.prefix_setting,
    }


def _package_dir(project: str, root: str | None) -> str:
    """build.root: a folder inside the project with a package.json."""
    if not root:
        return project
    folder = os.path.join(project, root)
    if not inside(project, folder):
        raise InvalidSource(f"build.root {root!r} leads out of the project")
    if not os.path.isdir(folder):
        raise InvalidSource(f"build.root {root!r}: no such folder in the project")
    if not os.path.isfile(os.path.join(folder, "package.json")):
        raise InvalidSource(f"build.root {root!r}: the folder has no package.json")
    return folder


def workspace_packages(project: str) -> dict[str, str]:
    """name -> folder of every package.json in the project (outside node_modules), a few levels down."""
    found: dict[str, str] = {}
    for folder, dirs, files in sandbox.walk(project):
        dirs[:] = [d for d in dirs if d != "node_modules" and not d.startswith(".")]
        if os.path.relpath(folder, project).count(os.sep) >= 4:
            dirs[:] = []
        if "package.json" in files:
            try:
                with open(os.path.join(folder, "package.json"), encoding="utf-8") as f:
                    name = json.load(f).get("name")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(name, str):
                found.setdefault(name, os.path.relpath(folder, project))
    return found


def _check_workspace(project: str, package_dir: str, package: Mapping[str, Any], root: str) -> None:
    """Every `workspace:` dependency of the package names a package of the workspace."""
    names = workspace_packages(project)
    for field in ("dependencies", "devDependencies", "optionalDependencies"):
        deps = package.get(field)
        if not isinstance(deps, dict):
            continue
        for name, spec in deps.items():
            if isinstance(spec, str) and spec.startswith("workspace:") and name not in names:
                raise InvalidSource(
                    f"build.root {root!r}: its {field} name {name!r} ({spec}), but no package of the workspace is "
                    f"called that (found: {', '.join(sorted(names)) or 'none'})"
                )


def _output_dir(
    package_dir: str,
    requested: str | None,
    project: str | None = None,
    framework: frameworks.Framework | None = None,
    public_written: bool = False,
) -> str:
    """The output folder, relative to the package, resolved with all its links: it must lie inside
    the project, and it must not hold fcbuild's own folder."""
    output = find_output_dir(package_dir, requested, framework, public_written)
    if not inside(project or package_dir, output):
        raise BuildFailed(f"output_dir {os.path.relpath(output, project)!r} leads out of the project (through a link)")
    real = os.path.realpath(output)
    if real == os.path.realpath(project or package_dir) and requested is None:
        raise BuildFailed("the output folder is the project itself")
    if os.path.lexists(os.path.join(real, META_DIR.rstrip("/"))):
        raise InvalidOutput(f"the build output has a {META_DIR} folder, which fcbuild keeps for itself")
    return real


# --- the workspace ----------------------------------------------------------------------------


def _make_workspace(settings: PipelineSettings, site: str, instance: Instance, log: Any) -> BuildPaths:
    """The target's workspace, at the same path for every build of the target (bundlers that embed
    absolute paths then name files alike): root-owned, passable but not listable by builds. A disk
    too full to start gets room from the warm cache first."""
    root = settings.workspace_root
    sandbox.ensure_root(settings.workspace_root)  # an invoke may come without /initialize
    free_mb = shutil.disk_usage(root).free // 2**20
    if free_mb < settings.min_free_mb:
        removed = instance.warm_cache.free_up(settings.min_free_mb * 2**20, root)
        now_mb = shutil.disk_usage(root).free // 2**20
        log.warning(
            "%d MB free under %s: removed %d warm dependency tree(s), %d MB free now", free_mb, root, removed, now_mb
        )
        free_mb = now_mb
    if free_mb < settings.min_free_mb:
        raise DiskFull(f"{root}: {free_mb} MB free, {settings.min_free_mb} MB needed (raise the function's disk size)")
    workspace = os.path.join(root, "ws", site)
    if os.path.lexists(workspace):  # left by a build that did not finish (the runtime was killed)
        sandbox.remove_tree(workspace)
    os.mkdir(workspace, 0o711)
    os.chmod(workspace, 0o711)
    return BuildPaths(
        workspace=workspace,
        home=os.path.join(workspace, "home"),
        tmp=os.path.join(workspace, "tmp"),
        caches=os.path.join(workspace, "caches"),
        corepack_home=os.path.join(root, "tools", "corepack"),
    )


def _hand_over(paths: BuildPaths, project: str, slot: sandbox.Slot, instance: Instance, site: str) -> None:
    """Give the build its folders: the project, an empty HOME and TMPDIR, and the site's own
    package-manager caches (moved in from the runtime's private cache folder), all owned by the
    slot's user and closed to everyone else."""
    kept = os.path.join(instance.settings.workspace_root, "cache", "sites", site)
    if os.path.isdir(kept) and not os.path.islink(kept):
        os.rename(kept, paths.caches)
    for folder in (paths.home, paths.tmp, paths.caches):
        os.makedirs(folder, exist_ok=True)
    if not slot.isolated:
        return
    assert slot.uid is not None and slot.gid is not None
    me = os.geteuid()
    sandbox.chown_tree(project, slot.uid, slot.gid, only_from={me})
    if sandbox.tree_owner(paths.caches) != slot.uid:  # last used by another slot's user (or new)
        sandbox.chown_tree(paths.caches, slot.uid, slot.gid, only_from=instance.build_uid_set | {me})
    for folder in (project, paths.home, paths.tmp, paths.caches):
        os.lchown(folder, slot.uid, slot.gid)
        os.chmod(folder, 0o700)


def _own_restored_tree(project: str, slot: sandbox.Slot, instance: Instance, *, warm: bool) -> None:
    """Restored node_modules trees (the root's and a workspace's packages') become the build user's."""
    if not slot.isolated:
        return
    assert slot.uid is not None and slot.gid is not None
    allowed = instance.build_uid_set if warm else {os.geteuid()}  # a tree from OSS was extracted by us
    for rel in ["", *nested_trees(project)]:
        tree = os.path.join(project, rel, "node_modules")
        if os.path.isdir(tree) and sandbox.tree_owner(tree) != slot.uid:
            sandbox.chown_tree(tree, slot.uid, slot.gid, only_from=allowed)


def _clean_up(
    paths: BuildPaths, slot: sandbox.Slot, instance: Instance, site: str, settings: PipelineSettings, log: Any
) -> None:
    """After the build: nothing of it runs, its files in shared temp folders are gone, and the
    site's caches go back where no build can reach them."""
    try:
        instance.containment.end(slot)
        if slot.isolated:
            assert slot.uid is not None
            sandbox.remove_files_of(slot.uid, skip=(settings.workspace_root,))
        kept = os.path.join(settings.workspace_root, "cache", "sites", site)
        if os.path.isdir(paths.caches) and not os.path.islink(paths.caches):
            sandbox.remove_tree(kept)
            os.makedirs(os.path.dirname(kept), mode=0o700, exist_ok=True)
            os.rename(paths.caches, kept)
    except OSError as exc:
        log.warning("clean-up after the build: %s", exc)


class _Timer:
    """Adds up the time spent inside `with` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> None:
        self._started = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.monotonic() - self._started


# --- dependencies ----------------------------------------------------------------------------


def _install(run: Runner, job: BuildJob, pm: PackageManager, project: str, *, restored: bool, log: Any) -> None:
    """The install step. `npm ci` deletes node_modules first, so on a restored tree npm runs
    `npm install` instead, and the lockfile must come through unchanged: if npm wanted to change
    it, the original is put back and a clean `npm ci` runs after all (what ci would have done)."""
    if job.install or not (restored and pm.name == "npm" and pm.lockfile):
        run("install", job.install or pm.install_argv())
        return
    lock_path = os.path.join(project, pm.lockfile)
    with open(lock_path, "rb") as f:
        before = f.read()
    run("install", pm.argv("install", "--prefer-offline", "--no-audit", "--no-fund"))
    with open(lock_path, "rb") as f:
        changed = f.read() != before
    if changed:
        log.warning("npm install changed %s on the restored tree: running a clean npm ci instead", pm.lockfile)
        _write_no_follow(lock_path, before)  # the install could have left a link there
        sandbox.remove_tree(os.path.join(project, "node_modules"))
        run("install", pm.install_argv())


def _write_no_follow(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _cache_location(job: BuildJob, settings: PipelineSettings) -> tuple[str, str]:
    """Bucket and prefix of packed dependency trees in OSS: configured, else beside the site's own metadata."""
    return settings.cache_bucket or job.target.bucket, settings.cache_prefix or f"{job.target.prefix}{META_DIR}deps/"


def _refresh_cdn(ctx: FcContext, job: BuildJob, changed: list[str], settings: PipelineSettings, log: Any) -> Any:
    """After the switch: refresh the changed URLs a CDN may hold stale (not content-hashed ones)."""
    import cdn_io

    assert job.cdn is not None
    stale = [p for p in changed if not is_content_hashed(p)]
    url_prefix = job.cdn.path if job.cdn.path is not None else job.target.prefix
    urls = cdn_io.refresh_urls_for(stale, job.cdn.domains, job.cdn.scheme, url_prefix)
    if ctx.credentials is None:
        return cdn_io.RefreshReport(urls=len(urls), error="no credentials for the CDN API")
    return cdn_io.refresh(ctx.credentials, urls, region=ctx.region, endpoint=settings.cdn_endpoint, log=log)


# --- deploying -------------------------------------------------------------------------------


ROOT_ABSOLUTE_RE = re.compile(r"""(?:src|href)\s*=\s*["'](/(?!/)[^"'#?]+)""", re.IGNORECASE)


def _npm_default_registry(node_bin: str, launch_env: Mapping[str, str]) -> str:
    env = {"PATH": f"{node_bin}:/usr/bin:/bin", "HOME": "/nonexistent", "npm_config_userconfig": "/nonexistent/user"}
    env["npm_config_globalconfig"] = "/nonexistent/global"
    env.update(library_path(launch_env))
    try:
        done = subprocess.run(
            ["npm", "config", "get", "registry"], env=env, capture_output=True, text=True, timeout=30, cwd="/"
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip().rstrip("/") if done.returncode == 0 else ""


def _entry_page(output: str) -> str:
    """The output's index.html (its first MB), or "" where there is none."""
    try:
        with open(os.path.join(output, "index.html"), encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def prefix_warnings(output: str, prefix: str) -> list[str]:
    """A site deployed under a prefix whose entry page names its assets from the domain root
    (`/assets/app.js`, Vite's default base) loads nothing under `https://domain/<prefix>`: say so."""
    if not prefix:
        return []
    absolute = [u for u in ROOT_ABSOLUTE_RE.findall(_entry_page(output)) if not u.startswith("/" + prefix)]
    if not absolute:
        return []
    return [
        f"index.html names {len(absolute)} URL(s) from the domain root ({absolute[0]}), but the site is deployed "
        f"under {prefix}: serve {prefix} at the root of a domain (a CDN origin path), or build with a relative or "
        'prefixed base (Vite `base`, vue-cli `publicPath`, create-react-app `PUBLIC_URL`); see "Serving a site '
        'under a prefix" in the README'
    ]


RELATIVE_ASSET_RE = re.compile(
    r"""<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["'](?![a-z][a-z0-9+.-]*:|/|#)([^"'?#]+\.(?:m?js|css))""",
    re.IGNORECASE,
)


def deep_link_warnings(output: str, framework: Any, package: dict[str, Any]) -> list[str]:
    """A single-page app with History-API routes whose entry page loads its scripts relative to the
    page (Vite `base: "./"`): a deep link (/shop/item/1) is answered with index.html, which then asks
    for /shop/item/assets/...: a blank page. Said where a router that makes such links is a dependency."""
    router = frameworks.history_router(package) if framework is not None and framework.spa else ""
    if not router:
        return []
    relative = RELATIVE_ASSET_RE.findall(_entry_page(output))
    if not relative:
        return []
    return [
        f"index.html loads {relative[0]} relative to the page, and the app routes with {router}: a deep link "
        f"such as /some/page is answered with index.html, which then asks for /some/{posixpath.normpath(relative[0])} "
        f'and shows a blank page. Build with asset URLs from the root (set {framework.prefix_setting} to "/", or '
        "to the site's prefix), or use hash routes"
    ]


def _check_index(output: str, project: str) -> None:
    """A site answers `/` with its index.html: an output without one would deploy and answer 404."""
    if os.path.isfile(os.path.join(output, "index.html")):
        return
    rel = os.path.relpath(output, project)
    names = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(output))
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    raise InvalidOutput(
        f"the output folder {rel} has no index.html at its root, so the site would answer 404 at / "
        f"(it holds: {shown or 'nothing'}): set build.output_dir to the folder with the index.html, or "
        "deploy.require_index false if that is intended"
    )


def _scan_output(output: str, owner: int | None, settings: PipelineSettings, prefix: str) -> list[Any]:
    """The files to deploy, refused whole (InvalidOutput, before anything is uploaded) when one of them
    cannot be, or when there are more of them than the function allows."""
    room = 1023 - len(prefix.encode("utf-8"))
    try:
        return scan_tree(
            output,
            owner_uid=owner,
            max_files=settings.max_output_files,
            max_bytes=settings.max_output_bytes,
            max_path_bytes=room,
        )
    except OutputRefused as exc:
        raise InvalidOutput(f"the build output was refused: {exc}") from None


def _provenance(
    job: BuildJob,
    source: dict[str, Any],
    pm: PackageManager,
    node: NodeInstall,
    project: str,
    command: tuple[str, ...],
    output: str,
) -> dict[str, Any]:
    """Where a release came from, recorded in the manifest: any served file traces back to its build."""
    lock: dict[str, Any] = {}
    if pm.lockfile:
        with open(os.path.join(project, pm.lockfile), "rb") as f:
            lock = {"name": pm.lockfile, "sha256": hashlib.sha256(f.read()).hexdigest()}
    return {
        "source": source,
        "lockfile": lock,
        "node": node.version_text,
        "packageManager": pm.describe(),
        "install": list(job.install or pm.install_argv()),
        "command": list(command),
        "outputDir": os.path.relpath(output, project),
    }


# --- steps ------------------------------------------------------------------------------------


class _Steps:
    def __init__(self, log: Any) -> None:
        self.log = log
        self.times: dict[str, float] = {}
        self.current = ""

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        self.current = name
        self.log.info("step %s: started", name)
        try:
            yield
        finally:
            self.times[name] = round(time.monotonic() - started, 3)
            self.log.info("step %s: %.2fs", name, self.times[name])


def _function_git_token(repo: str, settings: PipelineSettings, log: Any) -> str:
    """FCBUILD_GIT_TOKEN, for a repository on one of FCBUILD_GIT_HOSTS only: a request chooses the
    URL, the function chooses where its token may go."""
    if not settings.git_token:
        return ""
    host = (urlsplit(repo).hostname or "").lower()
    if host in settings.git_hosts:
        return settings.git_token
    where = ", ".join(settings.git_hosts) or "no host: FCBUILD_GIT_HOSTS is unset"
    log.info("not sending FCBUILD_GIT_TOKEN to %s: it goes to %s", host, where)
    return ""


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80] or "request"


def _fetch_source(
    job: BuildJob, workspace: str, settings: PipelineSettings, storage: oss_io.OssClient, log: Any
) -> tuple[str, dict[str, Any]]:
    """The project, at `<workspace>/project` whatever the archive's top folder is called."""
    source = job.source
    if isinstance(source, GitSource):
        project = os.path.join(workspace, "project")
        egress.check_url(source.repo, "source.git", settings.allow_private_nets)
        token = source.token or _function_git_token(source.repo, settings, log)
        secrets = (token,) if token else ()
        commit = git_source.fetch(
            source.repo,
            source.ref,
            project,
            token=token,
            submodules=source.submodules,
            launch_env=settings.launch_env,
            redact=lambda text: redact(text, secrets),
            log=log,
        )
        return project, {"url": source.repo, "ref": source.ref, "commit": commit}
    dest = os.path.join(workspace, "extract")
    project = os.path.join(workspace, "project")
    limits = Limits(settings.max_archive_bytes, settings.max_archive_files)
    if source.is_archive:
        archive = os.path.join(workspace, "source" + ("".join(os.path.splitext(source.key)[1:]) or ".archive"))
        got = storage.download(source.bucket, source.key, archive, max_bytes=settings.max_archive_bytes)
        log.info("downloaded %s (%d bytes)", source.url(), got.size)
        root = extract_archive(archive, dest, limits)
        os.unlink(archive)
        os.rename(root, project)
        shutil.rmtree(dest, ignore_errors=True)
        info = {"url": source.url(), "bucket": source.bucket, "key": source.key, "etag": got.etag, "crc64": got.crc64}
        return project, info
    objects = [o for o in storage.list_objects(source.bucket, source.prefix) if not o.key.endswith("/")]
    if not objects:
        raise SourceNotFound(f"{source.url()}: no objects under this prefix")
    if len(objects) > limits.max_files or sum(o.size for o in objects) > limits.max_bytes:
        raise InvalidSource(f"{source.url()}: over {limits.max_files} files or {limits.max_bytes} bytes")
    names = [o.key[len(source.prefix) :] for o in objects]
    folders = {name.rsplit("/", 1)[0] for name in names if "/" in name}
    folders |= {f.rsplit("/", i)[0] for f in list(folders) for i in range(1, f.count("/") + 1)}
    both = sorted(set(names) & folders)
    if both:
        raise InvalidSource(
            f"{source.url()}: {both[0]!r} is both a file and a folder (oss://{source.bucket}/{source.prefix}{both[0]} "
            f"and oss://{source.bucket}/{source.prefix}{both[0]}/...); a project folder cannot hold both"
        )
    os.makedirs(dest)
    pairs = []
    for obj in objects:
        path = safe_member_path(dest, obj.key[len(source.prefix) :])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pairs.append((obj.key, path))
    total = storage.download_files(source.bucket, pairs)
    log.info("downloaded %d files (%d bytes) from %s", len(pairs), total, source.url())
    os.rename(dest, project)
    return project, {"url": source.url(), "bucket": source.bucket, "prefix": source.prefix, "files": len(pairs)}


def _choose_toolchain(
    project: str, package: Mapping[str, Any], job: BuildJob, instance: Instance, storage: oss_io.OssClient, log: Any
) -> tuple[PackageManager, NodeInstall, dict[str, Any]]:
    settings = instance.settings
    names = os.listdir(project)
    heads = {}  # the first 4 KB of each lockfile: enough for its version
    for name, _ in LOCKFILES:
        if name in names:
            with open(os.path.join(project, name), encoding="utf-8", errors="replace") as f:
                heads[name] = f.read(4096)
    pm = detect_package_manager(names, package, heads.get("yarn.lock", ""), heads.get("pnpm-lock.yaml", ""))
    if ".yarnrc.yml" in names:
        with open(os.path.join(project, ".yarnrc.yml"), encoding="utf-8", errors="replace") as f:
            pm = committed_yarn(pm, f.read(65536), project)
        if pm.yarn_path:
            log.info("yarn %s runs from the project's own %s (yarnPath)", pm.version or "", pm.yarn_path)
    version_files = {}
    for name in (".nvmrc", ".node-version"):
        if name in names:
            with open(os.path.join(project, name), encoding="utf-8", errors="replace") as f:
                version_files[name] = f.read(200)
    spec, spec_from = node_requirement(version_files, package, job.node_version)
    installs = find_node_installs(settings)
    node_from: dict[str, Any] = {"from": "instance"}
    try:
        node = choose_node(installs, spec, spec_from)
    except NotAvailable as exc:
        if not (spec and installs):
            raise
        if not settings.node_download:
            raise NotAvailable(f"{exc}; FCBUILD_NODE_DOWNLOAD=0 keeps fcbuild from fetching one") from None
        node, node_from = _download_node(spec, spec_from, job, installs, instance, storage, log)
    if pm.name == "npm":
        pm = plan_npm(pm, heads.get(pm.lockfile, ""), node.version, bundled_npm_version(node.bin_dir))
    if pm.note:
        log.warning("%s", pm.note)
    log.info(
        "package manager %s %s (lockfile %s); Node.js %s at %s%s",
        pm.name,
        pm.version or f"(corepack {pm.release or pm.name})",
        pm.lockfile or "none",
        node.version_text,
        node.bin_dir,
        f" for {spec!r} from {spec_from}" if spec else "",
    )
    return pm, node, node_from


def _download_node(
    spec: str,
    spec_from: str,
    job: BuildJob,
    installs: list[NodeInstall],
    instance: Instance,
    storage: oss_io.OssClient,
    log: Any,
) -> tuple[NodeInstall, dict[str, Any]]:
    """No install here satisfies the project: the newest release that does, from the build's registry
    (through the private copy in OSS when there is one)."""
    settings = instance.settings
    newest = max(installs, key=lambda i: i.version)
    registry = job.registry or settings.npm_registry or instance.official_registry(newest.bin_dir)
    bucket, prefix = _cache_location(job, settings)

    def fetch(name: str, dest: str) -> bool:
        if not storage.object_exists(bucket, f"{prefix}tools/{name}"):
            return False
        storage.download(bucket, f"{prefix}tools/{name}", dest, max_bytes=node_dist.MAX_TARBALL_BYTES)
        return True

    def keep(name: str, path: str) -> None:
        storage.put_file(bucket, f"{prefix}tools/{name}", path, content_type="application/gzip", private=True)

    log.info("no Node.js here satisfies %r (from %s): fetching the newest release that does", spec, spec_from)
    try:
        return instance.node_releases.ensure(
            spec,
            registry,
            installs,
            chosen_registry=bool(job.registry),
            allowed=settings.allow_private_nets,
            oss_copy=(fetch, keep),
            log=log,
        )
    except NotAvailable as e:
        have = ", ".join(i.version_text for i in installs)
        raise with_message(
            e, f"{e}; no Node.js satisfies {spec!r} (from {spec_from}): this instance has {have}"
        ) from None


def bundled_npm_version(node_bin: str) -> str:
    """The version of the npm that comes with the Node in `node_bin` (read, not run), or ""."""
    cli = os.path.realpath(os.path.join(node_bin, "npm"))  # .../lib/node_modules/npm/bin/npm-cli.js
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(cli)), "package.json"), encoding="utf-8") as f:
            version = json.load(f).get("version", "")
    except (OSError, ValueError, AttributeError):
        return ""
    return version if isinstance(version, str) else ""


def find_node_installs(settings: PipelineSettings) -> list[NodeInstall]:
    """Node installs in the configured places (FC keeps several under /var/fc/lang), then the PATH's."""
    bins: list[tuple[str, bool]] = []
    for pattern in settings.node_paths:
        for folder in sorted(glob.glob(pattern)):
            for candidate in (os.path.join(folder, "bin"), folder):
                if os.access(os.path.join(candidate, "node"), os.X_OK):
                    bins.append((candidate, False))
                    break
    on_path = shutil.which("node", path=settings.launch_env.get("PATH", os.defpath))
    if on_path:
        bins.append((os.path.dirname(on_path), True))
    installs, seen = [], set()
    env = {"PATH": "/usr/bin:/bin", **library_path(settings.launch_env)}
    for bin_dir, path_node in bins:
        real = os.path.realpath(os.path.join(bin_dir, "node"))
        if real in seen:
            continue
        seen.add(real)
        try:
            out = subprocess.run(
                [os.path.join(bin_dir, "node"), "--version"], capture_output=True, text=True, timeout=20, env=env
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        version = parse_version(out)
        if version:
            installs.append(NodeInstall(version, bin_dir, on_path=path_node))
    return installs


class _LivePublisher:
    """The build log in OSS while the build runs (`fcbuild logs --follow` reads it as it grows): the
    redacted file so far, put again every LIVE_LOG_S when it grew (a second more per MB, so that a
    large log costs no more than a small one), until the final save replaces it."""

    def __init__(self, storage: oss_io.OssClient, bucket: str, key: str, build_log: BuildLog, log: Any) -> None:
        self.storage, self.bucket, self.key, self.build_log, self.log = storage, bucket, key, build_log, log
        self._stop = threading.Event()
        self._sent = 0
        self._thread = threading.Thread(target=self._run, name="live-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(LIVE_LOG_S + self._sent / (1024 * 1024)):
            written, data = self.build_log.snapshot()
            if written == self._sent or self._stop.is_set():
                continue
            try:
                self.storage.put_bytes(
                    self.bucket,
                    self.key,
                    data,
                    content_type="text/plain; charset=utf-8",
                    cache_control="no-cache",
                    private=True,
                )
                self._sent = written
            except Exception as exc:  # the live copy is a courtesy: the final save is what counts
                self.log.debug("live build log not updated: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(30)


def _save_log(storage: oss_io.OssClient, bucket: str, key: str, build_log: BuildLog, log: Any) -> str:
    """Best effort: a log that cannot be saved must not turn a result into a failure."""
    try:
        data = build_log.contents()
        storage.put_bytes(
            bucket, key, data, content_type="text/plain; charset=utf-8", cache_control="no-cache", private=True
        )
        return f"oss://{bucket}/{key}"
    except Exception as exc:
        log.warning("could not save the build log to oss://%s/%s: %s", bucket, key, exc)
        return ""
