"""Safe releases and asynchronous invocations, through the real fcbuild process and the local OSS server."""

from __future__ import annotations

import concurrent.futures
import json
import re
import time

import oss2
import pytest

from localoss import LocalOss
from tests.archives import pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import start_runtime
from tests.test_e2e_build import CREDS, TINY

ASYNC = {**CREDS, "x-fc-invocation-type": "Async"}


@pytest.fixture(scope="module")
def oss(tmp_path_factory):
    with LocalOss(str(tmp_path_factory.mktemp("oss")), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as s:
        s_bucket = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), s.endpoint, "src", region=REGION)
        s_bucket.put_object("tiny.tar.gz", pack_tar(TINY))
        yield s


@pytest.fixture(scope="module")
def runtime(oss):
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_UPLOAD_MARGIN_S": "2"})
    yield rt
    rt.kill()


@pytest.fixture(scope="module")
def other_instance(oss):
    """A second instance of the function: builds of one target on two instances may overlap."""
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_UPLOAD_MARGIN_S": "2"})
    yield rt
    rt.kill()


def site(oss):
    return oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "site", region=REGION)


def keys(oss, prefix):
    return {o.key for o in oss2.ObjectIteratorV2(site(oss), prefix=prefix) if "/.fcbuild/" not in o.key}


def deploy(runtime, prefix, text, *, keep=None, headers=CREDS, delay_ms=0, request_id=None, plain=False):
    env = {"SITE_TEXT": text, "BUILD_DELAY_MS": str(delay_ms), **({"PLAIN_ASSETS": "1"} if plain else {})}
    event = {"source": "oss://src/tiny.tar.gz", "target": {"bucket": "site", "prefix": prefix}, "build": {"env": env}}
    if keep is not None:
        event["deploy"] = {"keep_releases": keep}
    return runtime.invoke(event, headers=headers, request_id=request_id, timeout=300, fresh=True)


def js_of(oss, prefix):
    index = site(oss).get_object(prefix + "index.html").read().decode()
    return re.search(r"/assets/(index-[0-9a-f]{8}\.js)", index).group(1)


def test_stale_objects_wait_for_keep_releases_and_foreign_keys_survive(oss, runtime):
    b = site(oss)
    b.put_object("rel/foreign.txt", b"not ours")
    b.put_object("rel/assets/index-00000000.js", b"not ours either")
    first = deploy(runtime, "rel/", "one", keep=1)
    assert first.status == 200, first.body
    js1 = js_of(oss, "rel/")
    assert deploy(runtime, "rel/", "two", keep=1).json()["releases"]["deletedObjects"] == 0
    js2 = js_of(oss, "rel/")
    assert {"rel/assets/" + js1, "rel/assets/" + js2} <= keys(oss, "rel/")  # the previous release stays
    third = deploy(runtime, "rel/", "three", keep=1)
    assert third.json()["releases"]["deletedObjects"] == 1
    js3 = js_of(oss, "rel/")
    present = keys(oss, "rel/")
    assert "rel/assets/" + js1 not in present  # two deploys old: gone
    assert {"rel/assets/" + js2, "rel/assets/" + js3} <= present
    assert {"rel/foreign.txt", "rel/assets/index-00000000.js"} <= present  # no manifest of ours made them
    manifest = json.loads(b.get_object("rel/.fcbuild/manifest.json").read())
    assert [r["id"] for r in manifest["releases"]] == [third.json()["requestId"], manifest["releases"][1]["id"]]


def test_concurrent_deploys_end_with_the_newer_one_live_and_complete(oss, runtime, other_instance):
    """Steps: an older build that is slow to finish, then a newer one on another instance; the
    newer publishes, the older reports Superseded at its HTML switch and publishes nothing."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        older = pool.submit(deploy, runtime, "race/", "older", delay_ms=2500, request_id="race-older")
        time.sleep(0.8)  # the older one has claimed the target and is building
        newer = pool.submit(deploy, other_instance, "race/", "newer", request_id="race-newer")
        newer_resp, older_resp = newer.result(), older.result()
    assert newer_resp.status == 200, newer_resp.body
    assert older_resp.status == 404
    body = older_resp.json()
    assert body["errorType"] == "Superseded"
    assert "race-newer" in body["errorMessage"]
    index = site(oss).get_object("race/index.html").read().decode()
    js = js_of(oss, "race/")
    assert b"newer" in site(oss).get_object("race/assets/" + js).read()
    assert "older" not in index
    for rel in json.loads(site(oss).get_object("race/.fcbuild/manifest.json").read())["files"]:
        assert site(oss).object_exists("race/" + rel), rel  # the live release is complete


def test_a_build_started_before_the_live_one_never_publishes(oss, runtime, other_instance):
    slow = concurrent.futures.ThreadPoolExecutor(1).submit(
        deploy, runtime, "late/", "stale", delay_ms=3000, request_id="late-old"
    )
    time.sleep(0.8)
    assert deploy(other_instance, "late/", "fresh", request_id="late-new").status == 200
    resp = slow.result()
    assert resp.json()["errorType"] == "Superseded"
    assert b"fresh" in site(oss).get_object("late/assets/" + js_of(oss, "late/")).read()


def test_builds_of_one_target_on_one_instance_take_turns_and_the_newer_ends_live(oss, runtime):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        older = pool.submit(deploy, runtime, "turns/", "older", delay_ms=1500, request_id="turns-older")
        time.sleep(0.5)
        newer = pool.submit(deploy, runtime, "turns/", "newer", request_id="turns-newer")
        older_resp, newer_resp = older.result(), newer.result()
    assert older_resp.status == 200 and newer_resp.status == 200, (older_resp.body, newer_resp.body)
    assert newer_resp.json()["queueSeconds"] > 0.5  # it waited for the older one to finish
    assert b"newer" in site(oss).get_object("turns/assets/" + js_of(oss, "turns/")).read()


def test_async_status_lifecycle_and_retry_does_not_deploy_twice(oss, runtime):
    rid = "async-1"
    status_key = f"async/.fcbuild/status/{rid}.json"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(deploy, runtime, "async/", "a", headers=ASYNC, delay_ms=1500, request_id=rid)
        seen_running = False
        deadline = time.monotonic() + 30
        while not pending.done() and time.monotonic() < deadline:
            try:
                doc = json.loads(site(oss).get_object(status_key).read())
                seen_running |= doc["status"] == "running"
            except oss2.exceptions.NoSuchKey:
                pass
            time.sleep(0.1)
        first = pending.result()
    assert first.status == 200 and seen_running
    doc = json.loads(site(oss).get_object(status_key).read())
    assert doc["status"] == "succeeded" and doc["result"]["requestId"] == rid
    manifest_before = site(oss).get_object("async/.fcbuild/manifest.json").read()
    retried = deploy(runtime, "async/", "a", headers={**ASYNC, "x-fc-retry-count": "1"}, request_id=rid)
    assert retried.status == 200 and retried.json()["replayed"] is True
    assert site(oss).get_object("async/.fcbuild/manifest.json").read() == manifest_before  # no second deploy
    assert runtime.output().count(f"{rid} [INFO] step build: started") == 1


def test_async_failure_is_recorded(oss, runtime):
    event = {
        "source": "oss://src/tiny.tar.gz",
        "target": "oss://site/asyncfail/",
        "build": {"env": {"BUILD_FAIL": "1"}},
    }
    resp = runtime.invoke(event, headers=ASYNC, request_id="async-fail")
    assert resp.json()["errorType"] == "BuildFailed"
    doc = json.loads(site(oss).get_object("asyncfail/.fcbuild/status/async-fail.json").read())
    assert doc["status"] == "failed" and doc["error"]["errorType"] == "BuildFailed"
    assert "TS2304" in doc["error"]["errorMessage"]


def test_a_deploy_that_fails_leaves_the_live_site_byte_identical(oss):
    """Every PUT of index.html fails: the plain assets already switched (favicon.svg, a new
    robots.txt...) are put back, and the live site is exactly what it was."""
    from localoss import FaultRule

    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_OSS_RETRIES": "1"})
    try:
        assert deploy(rt, "whole/", "before", plain=True).status == 200
        before = {k: site(oss).get_object(k).read() for k in keys(oss, "whole/")}
        rule = oss.server.faults.add(FaultRule("PUT", "whole/index.html", count=None, status=503))
        try:
            resp = deploy(rt, "whole/", "after", plain=True)
        finally:
            oss.server.faults.clear()
        body = resp.json()
        assert body["errorType"] == "UploadFailed" and "put back as it was" in body["errorMessage"], body
        assert rule.matched >= 2
        assert "put back 2 of 2 switched files" in rt.output()  # robots.txt and app.js, not the refused index
        now = {k: site(oss).get_object(k).read() for k in keys(oss, "whole/") if k in before}
        assert now == before
        new_only = keys(oss, "whole/") - set(before)
        assert all(k.startswith("whole/assets/") for k in new_only), new_only  # only unreferenced hashed files
    finally:
        rt.kill()


@pytest.mark.parametrize("fault", [{"status": 503}, {"reset_after": 0}], ids=["refused", "cut"])
def test_a_phase_one_upload_that_fails_is_upload_failed_and_its_status_ends(oss, fault):
    """The content-addressed files of phase 1 cannot be uploaded (OSS refuses them, or the connection
    is cut): UploadFailed naming the file (it was answered Internal), the status object ends failed,
    and the live site is untouched."""
    from localoss import FaultRule

    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_OSS_RETRIES": "1"})
    prefix = f"p1-{next(iter(fault))}/"
    try:
        assert deploy(rt, prefix, "before").status == 200
        before = {k: site(oss).get_object(k).read() for k in keys(oss, prefix) if "/.fcbuild/" not in k}
        oss.server.faults.add(FaultRule("PUT", f"{prefix}assets/*", count=None, **fault))
        try:
            resp = deploy(rt, prefix, "after", request_id=f"p1-{next(iter(fault))}-1")
        finally:
            oss.server.faults.clear()
        body = resp.json()
        assert body["errorType"] == "UploadFailed" and "assets/" in body["errorMessage"], body
        status = json.loads(site(oss).get_object(f"{prefix}.fcbuild/status/p1-{next(iter(fault))}-1.json").read())
        assert status["status"] == "failed" and status["error"]["errorType"] == "UploadFailed"
        assert {k: site(oss).get_object(k).read() for k in before} == before
    finally:
        rt.kill()


def test_rollback_and_the_list_of_releases_through_the_runtime(oss, runtime):
    ids = []
    for text in ("first", "second", "third"):
        resp = deploy(runtime, "roll/", text)
        assert resp.status == 200, resp.body
        ids.append(resp.json()["release"])
    listed = runtime.invoke({"releases": {"target": "oss://site/roll/"}}, headers=CREDS).json()
    assert [r["id"] for r in listed["releases"]] == ids[::-1]
    assert listed["releases"][0]["source"]["url"] == "oss://src/tiny.tar.gz"
    resp = runtime.invoke({"rollback": {"target": "oss://site/roll/", "release": "previous"}}, headers=CREDS)
    assert resp.status == 200, resp.body
    assert resp.json()["rolledBackTo"] == ids[1]
    assert b"second" in site(oss).get_object("roll/assets/" + js_of(oss, "roll/")).read()
    resp = runtime.invoke({"rollback": {"target": "oss://site/roll/", "release": ids[0]}}, headers=CREDS)
    assert resp.status == 200 and b"first" in site(oss).get_object("roll/assets/" + js_of(oss, "roll/")).read()
    bad = runtime.invoke({"rollback": {"target": "oss://site/roll/", "release": "nope"}}, headers=CREDS)
    assert bad.json()["errorType"] == "InvalidRequest" and "not a kept release" in bad.json()["errorMessage"]


def test_provenance_is_recorded_and_every_object_names_its_release(oss, runtime):
    resp = deploy(runtime, "prov/", "traced", request_id="prov-1")
    assert resp.status == 200, resp.body
    doc = json.loads(site(oss).get_object("prov/.fcbuild/manifest.json").read())
    release = doc["release"]
    assert release["id"] == "prov-1" and release["startedAt"] <= release["finishedAt"]
    src = release["source"]
    assert src["url"] == "oss://src/tiny.tar.gz" and src["etag"] and src["crc64"].isdigit()
    assert release["lockfile"]["name"] == "package-lock.json" and len(release["lockfile"]["sha256"]) == 64
    assert release["node"].startswith("v") and release["packageManager"]["name"] == "npm"
    assert release["install"] == ["npm", "ci"] and release["command"] == ["npm", "run", "build"]
    for key in keys(oss, "prov/"):
        assert site(oss).head_object(key).headers["x-oss-meta-fcbuild-release"] == "prov-1", key
    for path, entry in doc["files"].items():
        assert entry["md5"] and entry["size"] >= 0, path


def test_an_unchanged_rebuild_of_a_bundle_that_embeds_its_path_uploads_nothing(oss, runtime):
    """Bundlers such as webpack 4 hash the project's absolute path: builds of one target run at one path."""
    event = {
        "source": "oss://src/tiny.tar.gz",
        "target": "oss://site/same-path/",
        "build": {"env": {"EMBED_PATH": "1"}},
    }
    first = runtime.invoke(event, headers=CREDS, timeout=300)
    assert first.status == 200, first.body
    again = runtime.invoke(event, headers=CREDS, timeout=300).json()
    assert again["files"]["uploaded"] == 0 and again["files"]["skipped"] == first.json()["files"]["uploaded"]
