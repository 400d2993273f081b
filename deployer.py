"""Running a deploy against OSS: all or nothing, and the newest build wins.

    phase 1 (no lock)   new content-addressed files, under names no live page uses
    the lease           `<prefix>.fcbuild/lease/<n>.json`, created only if absent; newer-wins decided here
    phase 2 (leased)    every file at a stable name, each after its live version is kept in the release
                        store (`<prefix>.fcbuild/releases/<release>/<path>`, a server-side copy):
                        plain assets, entry pages, the root index.html last
    commit              the manifest, recording the release and its provenance
    after               retention (old objects, old stored copies), then the lease is released

A failure in phase 2 or at the commit puts back every file already switched (from the release store,
or deleted if it was new), so the live site is as it was. A rollback re-publishes a kept release the
same way, without building. Knows nothing of HTTP or builds: the pipeline hands it files and records.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import oss_io
from deploy_plan import DeployPlan, Retention, Upload, live_matches, plan_deploy, plan_retention
from errors import FcBuildError, InvalidOutput, InvalidRequest, Superseded, UploadFailed, with_message

META_DIR = ".fcbuild/"
LEASE_TTL_S = 60.0  # a lease not renewed for this long may be taken over...
LEASE_SKEW_S = 30.0  # ...this much later still, for clocks that differ between instances
LEASE_RENEW_S = 15.0
WRITE_MARGIN_S = 10.0  # no batch of uploads starts this close to the function's deadline
BATCH = 1000  # uploads between two checks of the lease and the deadline
LEASE_MARGIN_S = 10.0  # no live write once this close to the lease's own deadline
LEASE_POLL_S = 1.0
RELEASE_META = "x-oss-meta-fcbuild-release"
COPY_CONCURRENCY = 32  # server-side copies move no data through the function: more of them at once


def manifest_key(prefix: str) -> str:
    return f"{prefix}{META_DIR}manifest.json"


def store_key(prefix: str, release: str, path: str) -> str:
    return f"{prefix}{META_DIR}releases/{release}/{path}"


@dataclass(frozen=True)
class Claim:
    """Who deploys: the release id (the request id) and when its build started (newer wins)."""

    release: str
    started_at: float  # wall clock, seconds


@dataclass
class DeployReport:
    """What a deploy did, for the result and the log."""

    new_assets: int = 0
    stable: int = 0
    skipped: int = 0
    repaired: int = 0
    kept: int = 0  # previous versions copied into the release store
    restored: int = 0
    bytes: int = 0
    seconds: float = 0.0
    retries: int = 0
    deleted: int = 0
    changed: list[str] = field(default_factory=list)  # paths whose content changed (for the CDN)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uploaded": self.new_assets + self.stable,
            "newAssets": self.new_assets,
            "switched": self.stable,
            "skipped": self.skipped,
            "repaired": self.repaired,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "retries": self.retries,
        }


# --- the lease -----------------------------------------------------------------------------------


class Lease:
    """The right to write a target's live paths, held by one deploy at a time across instances.

    Leases are numbered objects, each created only if absent, so exactly one deploy can create the
    next number. The holder renews its deadline; a released lease, or one past its deadline (plus a
    margin for clock skew), lets the next number be created. A holder that finds the next number
    created (it was too slow to renew) has lost the lease and writes nothing more."""

    def __init__(
        self, storage: oss_io.OssClient, bucket: str, prefix: str, claim: Claim, log: Any, ttl_s: float = LEASE_TTL_S
    ) -> None:
        self.storage, self.bucket, self.claim, self.log = storage, bucket, claim, log
        self.ttl = ttl_s
        self.folder = f"{prefix}{META_DIR}lease/"
        self.number = -1
        self.deadline = 0.0
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _key(self, number: int) -> str:
        return f"{self.folder}{number:012d}.json"

    def numbers(self, keys: Iterable[str] | None = None) -> list[int]:
        """The numbers of the lease records among `keys` (default: those listed now), sorted."""
        if keys is None:
            keys = (o.key for o in self.storage.list_objects(self.bucket, self.folder))
        stems = (k[len(self.folder) : -5] for k in keys if k.startswith(self.folder) and k.endswith(".json"))
        return sorted(int(stem) for stem in stems if stem.isdigit())

    def _doc(self, **extra: Any) -> dict[str, Any]:
        return {"release": self.claim.release, "startedAt": self.claim.started_at, **extra}

    def acquire(self, wait_until: float, on_holder: Callable[[dict[str, Any]], None]) -> None:
        """Take the lease, waiting (until `wait_until`, monotonic) while another deploy holds it.
        `on_holder` sees the holder's record each time one is found (it raises to give up)."""
        while True:
            numbers = self.numbers()
            next_number = 0
            if numbers:
                top = numbers[-1]
                holder = self.storage.get_json(self.bucket, self._key(top))
                if holder is None:
                    continue  # removed between the listing and the read
                skew = min(LEASE_SKEW_S, self.ttl / 2)
                if not holder.get("released") and time.time() <= float(holder.get("deadline", 0)) + skew:
                    on_holder(holder)
                    if time.monotonic() > wait_until:
                        raise UploadFailed(
                            f"the deploy lease of oss://{self.bucket}/{self.folder} stayed held by release "
                            f"{holder.get('release')} until this build's deadline"
                        )
                    time.sleep(LEASE_POLL_S)
                    continue
                if not holder.get("released"):
                    self.log.warning("taking over the stale deploy lease of release %s", holder.get("release"))
                next_number = top + 1
            self.deadline = time.time() + self.ttl
            if self.storage.put_json_if_absent(self.bucket, self._key(next_number), self._doc(deadline=self.deadline)):
                self.number = next_number
                self.log.info("deploy lease %d taken", next_number)
                self._renewer = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
                self._renewer.start()
                return

    def _renew_loop(self) -> None:
        while not self._stop.wait(min(LEASE_RENEW_S, self.ttl / 4)):
            try:
                if self.storage.object_exists(self.bucket, self._key(self.number + 1)):
                    self.lost = True
                    self.log.error("the deploy lease was taken over by another deploy; writing nothing more")
                    return
                deadline = time.time() + self.ttl
                self.storage.put_json(self.bucket, self._key(self.number), self._doc(deadline=deadline), private=True)
                self.deadline = deadline
            except FcBuildError as exc:
                self.log.warning("could not renew the deploy lease: %s", exc)

    def check(self) -> None:
        """Before each live write: the lease is still ours, with time left."""
        if self.lost or time.time() > self.deadline - min(LEASE_MARGIN_S, self.ttl / 6):
            self.lost = True
            raise UploadFailed("the deploy lease was lost (not renewed in time); the live site was left to its holder")

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(5)
        if self.number < 0 or self.lost:
            return
        try:
            self.storage.put_json(self.bucket, self._key(self.number), self._doc(released=True), private=True)
            older = [self._key(n) for n in range(max(0, self.number - 50), self.number)]
            if older:
                self.storage.delete_objects(self.bucket, older)
        except FcBuildError as exc:
            self.log.warning("could not release the deploy lease (it expires in %.0fs): %s", self.ttl, exc)


# --- deploying -----------------------------------------------------------------------------------


@dataclass
class Target:
    bucket: str
    prefix: str
    keep_releases: int = 3


class _Switch:
    """Phase 2's record of the live paths changed so far, to put them back on failure."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.saved: dict[str, str | None] = {}  # path -> where its previous version is kept (None: it was new)

    def add(self, path: str, kept: str | None) -> None:
        with self.lock:
            self.saved.setdefault(path, kept)


def read_manifest(storage: oss_io.OssClient, target: Target) -> dict[str, Any]:
    """The manifest, with every kept release's `files` and `paths` filled in (the live release's
    files are stored once, at the top)."""
    doc = storage.get_json(target.bucket, manifest_key(target.prefix))
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        return {"files": {}, "releases": []}
    if doc.get("version") == 1:  # no history yet: the files it names are one release
        doc["releases"] = [{"id": doc.get("requestId", "earlier"), "paths": sorted(doc["files"])}]
    if not isinstance(doc.get("releases"), list):
        doc["releases"] = []
    releases = [r for r in doc["releases"] if isinstance(r, dict)]
    if doc.get("version") == 3 and releases:
        releases[0] = {**releases[0], "files": doc["files"]}
    for r in releases:
        if "paths" not in r and isinstance(r.get("files"), dict):
            r["paths"] = sorted(r["files"])
    doc["releases"] = releases
    return doc


def deploy(
    storage: oss_io.OssClient,
    target: Target,
    output: str,
    files: Sequence[Any],
    *,
    claim: Claim,
    record: Mapping[str, Any],
    cache_rules: Sequence[tuple[str, str]],
    deadline: float,
    log: Any,
    lease_ttl_s: float = LEASE_TTL_S,
) -> DeployReport:
    """Deploy the `files` (LocalFile) found in `output` to the target. `record` is the release's
    provenance, stored in the manifest. Raises Superseded (nothing live written) when a build that
    started later has deployed, UploadFailed after putting the live site back."""
    started = time.monotonic()
    retries_before = storage.retry_count
    report = DeployReport()
    manifest = read_manifest(storage, target)
    _supersede_check(manifest, claim, target)
    plan, _ = _plan(storage, target, files, manifest, cache_rules)
    first_plan = plan
    log.info(
        "deploy plan: %d new content-addressed files, %d files at stable names, %d unchanged%s",
        len(plan.new_assets),
        len(plan.stable),
        len(plan.skipped),
        f", {len(plan.repaired)} live objects to repair" if plan.repaired else "",
    )
    headers = _Headers(claim.release)
    _phase1(storage, target, output, plan.new_assets, headers, log, deadline)
    uploaded_early = {u.path for u in plan.new_assets}
    lease = Lease(storage, target.bucket, target.prefix, claim, log, lease_ttl_s)
    lease.acquire(deadline, lambda holder: _supersede_by_holder(holder, claim, target))
    try:
        manifest = read_manifest(storage, target)  # another deploy may have landed while this one waited
        _supersede_check(manifest, claim, target)
        plan, live = _plan(storage, target, files, manifest, cache_rules)
        late = [u for u in plan.new_assets if u.path not in uploaded_early]
        _phase1(storage, target, output, late, headers, log, deadline)
        phase1 = [u for u in first_plan.new_assets if u.path in plan.manifest] + late
        switch = _Switch()
        try:
            etags = _phase2(storage, target, output, plan, manifest, live, headers, lease, switch, log, deadline)
            lease.check()
            files_doc = _files_with_etags(plan, etags, claim.release)
            retention = _commit(storage, target, manifest, files_doc, claim, record, log)
        except BaseException as exc:
            if not lease.lost:
                report.restored = _restore(storage, target, switch, live, log)
            if isinstance(exc, FcBuildError):
                raise _put_back(exc) from exc
            raise
        report.deleted = _retention(storage, target, retention, log)
    finally:
        lease.release()
    report.new_assets = len(phase1)
    report.stable = len(plan.stable)
    report.skipped = len(plan.manifest) - len(phase1) - len(plan.stable)
    report.repaired = len(first_plan.repaired)
    report.kept = sum(1 for v in switch.saved.values() if v)
    report.bytes = sum(u.size for u in (*phase1, *plan.stable))
    report.changed = [u.path for u in (*phase1, *plan.stable)]
    report.seconds = time.monotonic() - started
    report.retries = storage.retry_count - retries_before
    log.info(
        "deployed release %s: %d new assets, %d switched (%d earlier versions kept), %d unchanged in %.2fs",
        claim.release,
        report.new_assets,
        report.stable,
        report.kept,
        report.skipped,
        report.seconds,
    )
    return report


class _Headers:
    def __init__(self, release: str) -> None:
        self.release = release

    def of(self, upload: Upload) -> dict[str, str]:
        return {
            "Content-Type": upload.content_type,
            "Cache-Control": upload.cache_control,
            RELEASE_META: self.release,
        }


def _plan(
    storage: oss_io.OssClient,
    target: Target,
    files: Sequence[Any],
    manifest: Mapping[str, Any],
    cache_rules: Sequence[tuple[str, str]],
) -> tuple[DeployPlan, dict[str, str]]:
    """The plan against the manifest and what is live now (one listing request per 1,000 keys)."""
    live, _ = _without_nested(live_objects(storage, target), (f.path for f in files), target)
    history = [r["files"] for r in manifest.get("releases", [])[1:] if isinstance(r.get("files"), dict)]
    return plan_deploy(files, manifest["files"], cache_rules, live_etags=live, history=history), live


def live_objects(storage: oss_io.OssClient, target: Target) -> dict[str, str]:
    """path -> ETag of every object under the target, fcbuild's own folder aside (another site's,
    deployed in a folder under this one, included: see nested_sites)."""
    return {
        o.key[len(target.prefix) :]: o.etag
        for o in storage.list_objects(target.bucket, target.prefix)
        if not o.key.startswith(target.prefix + META_DIR)
    }


def nested_sites(live: Mapping[str, str]) -> list[str]:
    """Folders under the target where another site is deployed: each has its own `.fcbuild/`."""
    found = set()
    for path in live:
        at = path.find("/" + META_DIR)
        while at >= 0:
            found.add(path[: at + 1])
            at = path.find("/" + META_DIR, at + 1)
    return sorted(found)


def _outside(nested: Sequence[str]) -> Callable[[str], bool]:
    return lambda path: not any(path.startswith(folder) for folder in nested)


def _without_nested(
    live: Mapping[str, str], paths: Iterable[str], target: Target
) -> tuple[dict[str, str], tuple[str, ...]]:
    """`live` without the objects of sites deployed under this one, and those sites' folders. A file
    of the output inside one of them is refused: a site never writes into another site."""
    nested = nested_sites(live)
    if not nested:
        return dict(live), ()
    mine = _outside(nested)
    clash = sorted(p for p in paths if not mine(p))
    if clash:
        folder = next(n for n in nested if clash[0].startswith(n))
        more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
        raise InvalidOutput(
            f"the output has {clash[0]}{more} in {folder}, where another site is deployed "
            f"(oss://{target.bucket}/{target.prefix}{folder}, it has its own {META_DIR}): fcbuild never writes into "
            "another site; leave that folder out of the output, or deploy one of the two sites elsewhere"
        )
    return {p: e for p, e in live.items() if mine(p)}, tuple(nested)


def _supersede_check(manifest: Mapping[str, Any], claim: Claim, target: Target) -> None:
    live = manifest.get("release") if isinstance(manifest.get("release"), dict) else None
    if live and _newer(live.get("startedAt"), live.get("id"), claim):
        raise Superseded(
            f"oss://{target.bucket}/{target.prefix}: release {live.get('id')} of a build that started later "
            f"({_when(live.get('startedAt'))}) is live; this build published nothing"
        )


def _supersede_by_holder(holder: Mapping[str, Any], claim: Claim, target: Target) -> None:
    if _newer(holder.get("startedAt"), holder.get("release"), claim):
        raise Superseded(
            f"oss://{target.bucket}/{target.prefix}: release {holder.get('release')} of a build that started later "
            f"({_when(holder.get('startedAt'))}) is deploying; this build published nothing"
        )


def _newer(started: Any, release: Any, claim: Claim) -> bool:
    try:
        return (float(started), str(release)) > (claim.started_at, claim.release) and release != claim.release
    except (TypeError, ValueError):
        return False


def _when(started: Any) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(started)))
    except (TypeError, ValueError):
        return "?"


def _in_time(deadline: float) -> None:
    """No batch of writes starts this close to the function's deadline: what is left is needed to put
    the live site back."""
    left = deadline - time.monotonic()
    if left < WRITE_MARGIN_S:
        raise UploadFailed(
            f"the function's deadline is {max(0.0, left):.0f}s away: no further upload starts "
            "(give the function a longer timeout, or raise FCBUILD_UPLOAD_MARGIN_S)"
        )


def _batches(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _phase1(
    storage: oss_io.OssClient,
    target: Target,
    output: str,
    uploads: Sequence[Upload],
    headers: _Headers,
    log: Any,
    deadline: float,
) -> None:
    if not uploads:
        return
    log.info("phase 1: uploading %d new content-addressed files", len(uploads))
    for u in uploads:
        log.debug("phase 1: %s", u.path)
    for batch in _batches(uploads):
        _in_time(deadline)
        items = [
            oss_io.PutItem(target.prefix + u.path, os.path.join(output, u.path), u.size, u.md5, headers.of(u))
            for u in batch
        ]
        storage.put_files(target.bucket, items)


def _phase2(
    storage: oss_io.OssClient,
    target: Target,
    output: str,
    plan: DeployPlan,
    manifest: Mapping[str, Any],
    live: Mapping[str, str],
    headers: _Headers,
    lease: Lease,
    switch: _Switch,
    log: Any,
    deadline: float,
) -> dict[str, str]:
    """Switch the stable names, group by group (in batches, none started near the deadline); each live
    version is kept before it is replaced."""
    etags: dict[str, str] = {}
    previous = manifest["files"]
    live_release = (manifest.get("release") or {}).get("id", "earlier")
    for group in plan.stable_groups():
        what = "plain assets" if not group[0].is_entry else "pages" if group[0].path != "index.html" else "index.html"
        log.info(
            "phase 2: switching %d %s", len(group), what if what != "index.html" else "root index.html (the switch)"
        )
        for batch in _batches(group):
            lease.check()
            _in_time(deadline)
            etags.update(
                _switch_group(storage, target, batch, previous, live, live_release, switch, log, output, headers)
            )
    return etags


def _switch_group(
    storage: oss_io.OssClient,
    target: Target,
    group: Sequence[Upload],
    previous: Mapping[str, Any],
    live: Mapping[str, str],
    live_release: str,
    switch: _Switch,
    log: Any,
    output: str,
    headers: _Headers,
) -> dict[str, str]:
    """Keep each live version, then upload the new one, in parallel within the group."""
    for u in group:
        log.debug("phase 2: %s%s", u.path, " (keeping the live version)" if u.path in live else " (new)")

    def keep(upload: Upload) -> None:
        _keep_live(storage, target, upload.path, live, previous, live_release, switch, log)

    with concurrent.futures.ThreadPoolExecutor(COPY_CONCURRENCY, thread_name_prefix="oss-keep") as pool:
        list(pool.map(keep, group))
    items = [
        oss_io.PutItem(target.prefix + u.path, os.path.join(output, u.path), u.size, u.md5, headers.of(u))
        for u in group
    ]
    done = storage.put_files(target.bucket, items)
    return {k[len(target.prefix) :]: v for k, v in done.items()}


def _keep_live(
    storage: oss_io.OssClient,
    target: Target,
    path: str,
    live: Mapping[str, str],
    previous: Mapping[str, Any],
    live_release: str,
    switch: _Switch,
    log: Any,
) -> None:
    """Before a live path is replaced: its current version goes to the release store, under the
    release that wrote it, and the switch records where (None: the path is new)."""
    kept = None
    if path in live:
        writer = str((previous.get(path) or {}).get("release") or live_release)
        kept = store_key(target.prefix, writer, path)
        storage.copy_object(target.bucket, target.prefix + path, kept, acl="private")
        log.debug("kept %s as %s", path, kept)
    switch.add(path, kept)


def _restore(storage: oss_io.OssClient, target: Target, switch: _Switch, before: Mapping[str, str], log: Any) -> int:
    """Put back every path phase 2 changed, newest first: its kept version, or nothing if it was new.
    `before` is what was live (path -> ETag) when phase 2 began; a listing shows which paths changed
    (a write whose answer was lost may have landed; one the server refused did not)."""
    with switch.lock:
        touched = list(switch.saved.items())
    if not touched:
        return 0
    try:
        now = live_objects(storage, target)
        saved = [(p, kept) for p, kept in touched if now.get(p) != before.get(p)]
    except FcBuildError:
        saved = touched  # cannot tell: put back everything touched
    if not saved:
        log.warning("deploy failed before any live file changed")
        return 0
    log.warning("deploy failed: putting back %d switched files", len(saved))

    def put_back(item: tuple[str, str | None]) -> bool:
        path, kept = item
        for attempt in range(3):
            try:
                if kept:
                    storage.copy_object(target.bucket, kept, target.prefix + path, acl="default")
                else:
                    storage.delete_objects(target.bucket, [target.prefix + path])
                log.debug("put back %s", path)
                return True
            except FcBuildError as exc:
                if attempt == 2:
                    log.error("could not put back %s (%s): the next deploy repairs it", path, exc)
                    return False
                time.sleep(0.2 * (attempt + 1))
        return False

    # The entry page first (it names the other files), then everything else at once.
    first = [item for item in saved if item[0] == "index.html"]
    rest = [item for item in reversed(saved) if item[0] != "index.html"]
    ok = sum(put_back(item) for item in first)
    with concurrent.futures.ThreadPoolExecutor(COPY_CONCURRENCY, thread_name_prefix="oss-restore") as pool:
        ok += sum(pool.map(put_back, rest))
    failures = len(saved) - ok
    log.warning("put back %d of %d switched files", len(saved) - failures, len(saved))
    return len(saved) - failures


def _put_back(exc: FcBuildError) -> FcBuildError:
    """The same error, saying that the live site is as it was."""
    cause = exc.cause if isinstance(exc, oss_io.PartialTransfer) else exc
    if not isinstance(cause, FcBuildError):
        cause = UploadFailed(str(exc))
    return with_message(cause, f"{cause} (the live site was put back as it was)")


def _files_with_etags(plan: DeployPlan, etags: Mapping[str, str], release: str) -> dict[str, dict[str, object]]:
    files = {}
    for path, entry in plan.manifest.items():
        entry = dict(entry)
        if path in etags:
            entry["etag"] = etags[path].strip('"')
            entry["release"] = release
        entry.setdefault("release", release)
        files[path] = entry
    return files


def _commit(
    storage: oss_io.OssClient,
    target: Target,
    manifest: Mapping[str, Any],
    files: Mapping[str, Any],
    claim: Claim,
    record: Mapping[str, Any],
    log: Any,
) -> Retention:
    """The manifest: the live release's files and provenance, and the kept releases newest first.
    Returns what retention decided (what fell out of the kept window)."""
    now = time.time()
    release = {
        **record,
        "id": claim.release,
        "startedAt": claim.started_at,
        "finishedAt": now,
        "deployedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "files": dict(files),
    }
    retention = plan_retention(
        claim.release, release["deployedAt"], files, manifest.get("releases", []), target.keep_releases
    )
    # Stored once each: the live release's files at the top, `paths` only where no `files` says them.
    live = {k: v for k, v in release.items() if k != "files"}
    older = []
    for r in retention.releases[1:]:
        r = dict(r)
        if isinstance(r.get("files"), dict):
            r.pop("paths", None)
        older.append(r)
    doc = {
        "version": 3,
        "requestId": claim.release,
        "deployedAt": release["deployedAt"],
        "release": live,
        "files": dict(files),
        "releases": [live, *older],
        "keepReleases": target.keep_releases,
    }
    storage.put_json(target.bucket, manifest_key(target.prefix), doc, private=True, compact=True)
    log.info("manifest written: release %s is live (%d files)", claim.release, len(files))
    return retention


def _retention(storage: oss_io.OssClient, target: Target, retention: Retention, log: Any) -> int:
    """After the commit: objects of releases that fell out of the window go, with their kept copies."""
    keep_ids = {r.get("id") for r in retention.releases}
    stale_store = [
        o.key
        for o in storage.list_objects(target.bucket, f"{target.prefix}{META_DIR}releases/")
        if o.key[len(f"{target.prefix}{META_DIR}releases/") :].split("/", 1)[0] not in keep_ids
    ]
    nested = nested_sites(live_objects(storage, target)) if retention.delete else []
    doomed = [target.prefix + p for p in retention.delete if _outside(nested)(p)] + stale_store
    if not doomed:
        return 0
    try:
        storage.delete_objects(target.bucket, doomed)
    except FcBuildError as exc:  # the site is live; stale objects only cost storage
        log.warning("could not delete %d stale objects: %s", len(doomed), exc)
        return 0
    log.info("deleted %d objects that none of the last %d releases has", len(doomed), target.keep_releases + 1)
    return len(retention.delete)


# --- rollback and the list of releases -----------------------------------------------------------


def list_releases(storage: oss_io.OssClient, target: Target) -> list[dict[str, Any]]:
    manifest = read_manifest(storage, target)
    out = []
    for i, r in enumerate(manifest.get("releases", [])):
        source = r.get("source") if isinstance(r.get("source"), dict) else {"url": r.get("source")}
        out.append(
            {
                "id": r.get("id"),
                "live": i == 0,
                "deployedAt": r.get("deployedAt"),
                "source": source,
                "commit": (source or {}).get("commit"),
                "files": len(r.get("files") or r.get("paths") or []),
                **({"rollbackOf": r["rollbackOf"]} if r.get("rollbackOf") else {}),
            }
        )
    return out


def previous_release(storage: oss_io.OssClient, target: Target) -> str:
    """The id of the release before the live one, now: a rollback to "previous" means the one before
    what was live when it was asked for, not when its turn came."""
    releases = read_manifest(storage, target).get("releases", [])
    if len(releases) < 2:
        raise InvalidRequest(f"rollback.release: oss://{target.bucket}/{target.prefix} has no earlier release")
    return str(releases[1].get("id"))


def rollback(
    storage: oss_io.OssClient,
    target: Target,
    which: str,
    *,
    claim: Claim,
    deadline: float,
    log: Any,
    lease_ttl_s: float = LEASE_TTL_S,
) -> dict[str, Any]:
    """Re-publish a kept release: its stable-name files from the release store (its hashed assets
    are still there, kept by keep_releases), under the lease and in the order of a deploy."""
    started = time.monotonic()
    if which == "previous":
        which = previous_release(storage, target)
    lease = Lease(storage, target.bucket, target.prefix, claim, log, lease_ttl_s)
    lease.acquire(deadline, lambda holder: _supersede_by_holder(holder, claim, target))
    switch = _Switch()
    live_before: dict[str, str] = {}
    try:
        manifest = read_manifest(storage, target)
        _supersede_check(manifest, claim, target)  # newer wins, for rollbacks as for deploys
        if isinstance(manifest.get("keepReleases"), int):
            target = Target(target.bucket, target.prefix, manifest["keepReleases"])
        releases = manifest.get("releases", [])
        chosen = next((r for r in releases if r.get("id") == which), None)
        if chosen is None:
            kept = ", ".join(str(r.get("id")) for r in releases) or "none"
            raise InvalidRequest(f"rollback.release: {which!r} is not a kept release (kept: {kept})")
        wanted = chosen.get("files")
        if not isinstance(wanted, dict):
            raise InvalidRequest(f"rollback.release: release {chosen.get('id')} was recorded without its files")
        live, _ = _without_nested(live_objects(storage, target), wanted, target)
        live_before.update(live)
        current = manifest["files"]
        current_id = (manifest.get("release") or {}).get("id", "earlier")
        todo = []
        for path, entry in sorted(wanted.items()):
            if not live_matches(entry, live.get(path)):
                todo.append((path, entry))
        missing = [
            p for p, e in todo if e.get("cache_control") == "public, max-age=31536000, immutable" and p not in live
        ]
        if missing:
            raise InvalidRequest(
                f"rollback.release: release {chosen.get('id')} needs {len(missing)} content-addressed files that are "
                f"gone (e.g. {missing[0]}); raise deploy.keep_releases to roll back further"
            )
        order = sorted(todo, key=lambda pe: (pe[0].lower().endswith((".html", ".htm")), pe[0] == "index.html", pe[0]))
        log.info("rollback to release %s: %d files to put back", chosen.get("id"), len(order))
        etags: dict[str, str] = {}

        def put_back(item: tuple[str, Mapping[str, Any]]) -> None:
            path, entry = item
            _keep_live(storage, target, path, live, current, current_id, switch, log)
            writer = str(entry.get("release") or chosen.get("id"))
            source = store_key(target.prefix, writer, path)
            storage.copy_object(target.bucket, source, target.prefix + path, acl="default")
            etags[path] = str(entry.get("etag") or entry.get("md5") or "")  # a copy keeps its source's ETag

        groups = (
            [pe for pe in order if not pe[0].lower().endswith((".html", ".htm"))],
            [pe for pe in order if pe[0].lower().endswith((".html", ".htm")) and pe[0] != "index.html"],
            [pe for pe in order if pe[0] == "index.html"],
        )
        for group in groups:
            lease.check()
            with concurrent.futures.ThreadPoolExecutor(COPY_CONCURRENCY, thread_name_prefix="oss-copy") as pool:
                list(pool.map(put_back, group))
        lease.check()
        files = {
            p: {**e, "etag": etags[p].strip('"'), "release": claim.release} if p in etags else dict(e)
            for p, e in wanted.items()
        }
        record = {k: v for k, v in chosen.items() if k not in ("id", "files", "paths", "startedAt", "finishedAt")}
        record["rollbackOf"] = chosen.get("id")
        _commit(storage, target, {**manifest, "releases": releases}, files, claim, record, log)
    except BaseException as exc:
        if not lease.lost:
            _restore(storage, target, switch, live_before, log)
        if isinstance(exc, FcBuildError) and not isinstance(exc, InvalidRequest | InvalidOutput | Superseded):
            raise _put_back(exc) from exc
        raise
    finally:
        lease.release()
    return {
        "target": f"oss://{target.bucket}/{target.prefix}",
        "rolledBackTo": chosen.get("id"),
        "release": claim.release,
        "files": {"putBack": len(order), "unchanged": len(wanted) - len(order)},
        "durationSeconds": round(time.monotonic() - started, 3),
    }


# --- removing a site ----------------------------------------------------------------------------


def remove_site(
    storage: oss_io.OssClient,
    target: Target,
    *,
    claim: Claim,
    deadline: float,
    log: Any,
    lease_ttl_s: float = LEASE_TTL_S,
) -> dict[str, Any]:
    """Delete every object of the site at `target` (its `.fcbuild/` included), under the lease and
    newer-wins like a deploy: a deploy that started after the removal was asked for keeps its site.
    Only keys under the target's own folder are deleted (`pr-1/` never reaches `pr-12/`), and a site
    deployed in a folder under it (with its own `.fcbuild/`) is left as it is."""
    if not target.prefix.endswith("/"):
        raise InvalidRequest(f"remove.target: oss://{target.bucket}/{target.prefix} is not a folder")
    started = time.monotonic()
    where = f"oss://{target.bucket}/{target.prefix}"
    lease = Lease(storage, target.bucket, target.prefix, claim, log, lease_ttl_s)
    lease.acquire(deadline, lambda holder: _supersede_by_holder(holder, claim, target))
    lease_folder = lease.folder
    try:
        _supersede_check(read_manifest(storage, target), claim, target)
        paths = [o.key[len(target.prefix) :] for o in storage.list_objects(target.bucket, target.prefix)]
        nested = nested_sites(dict.fromkeys(p for p in paths if not p.startswith(META_DIR)))
        mine = _outside(nested)
        doomed = [target.prefix + p for p in paths if mine(p) and not (target.prefix + p).startswith(lease_folder)]
        # The site's pages go first, the manifest and records last: a removal cut short leaves a
        # site that is still described, never records of a site that is gone.
        doomed.sort(key=lambda k: (k.startswith(target.prefix + META_DIR), k))
        removed = 0
        for batch in _batches(doomed):
            lease.check()
            _in_time(deadline)
            removed += storage.delete_objects(target.bucket, list(batch))
        log.info("removed %s: %d objects%s", where, removed, f" ({len(nested)} sites under it kept)" if nested else "")
    finally:
        lease.release()
    # The lease's own records last, unless a deploy took the next lease meanwhile (then it is its site).
    leases = [o.key for o in storage.list_objects(target.bucket, lease_folder)]
    if not any(n > lease.number for n in lease.numbers(leases)):
        removed += storage.delete_objects(target.bucket, leases)
    return {
        "target": where,
        "removed": removed,
        **({"kept": [f"{where}{n}" for n in nested]} if nested else {}),
        "durationSeconds": round(time.monotonic() - started, 3),
    }


def last_deployed(storage: oss_io.OssClient, target: Target) -> float | None:
    """When the live release was deployed (its finishedAt), or None when nothing is recorded."""
    doc = storage.get_json(target.bucket, manifest_key(target.prefix))
    release = doc.get("release") if isinstance(doc, dict) else None
    try:
        return float(release.get("finishedAt")) if isinstance(release, dict) else None
    except (TypeError, ValueError):
        return None
