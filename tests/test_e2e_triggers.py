"""From an upload or a schedule to a deployed site, through the real fcbuild process: FC's OSS trigger
events, a time trigger's payload, the project's fcbuild.json, and FCBUILD_ALLOWED_TARGETS."""

from __future__ import annotations

import json
import shutil

import oss2
import pytest

from localoss import LocalOss
from tests.archives import pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import function_error, start_runtime
from tests.test_e2e_build import CREDS, TINY


@pytest.fixture(scope="module")
def oss(tmp_path_factory):
    with LocalOss(
        str(tmp_path_factory.mktemp("oss")), buckets=["src", "site", "other"], accounts=[AK, STS], region=REGION
    ) as s:
        yield s


@pytest.fixture(scope="module")
def runtime(oss):
    rt = start_runtime(
        {
            "FCBUILD_OSS_ENDPOINT": oss.endpoint,
            "FCBUILD_UPLOAD_MARGIN_S": "2",
            "FCBUILD_TARGET": "oss://site/uploads/{name}/",
            "FCBUILD_ALLOWED_TARGETS": "oss://site/",
        }
    )
    yield rt
    rt.kill()


def bucket(oss, name):
    return oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, name, region=REGION)


def project_with(tmp_path, name, config):
    folder = tmp_path / name
    shutil.copytree(TINY, folder)
    if config is not None:
        (folder / "fcbuild.json").write_text(json.dumps(config))
    return pack_tar(str(folder))


def oss_event(name, bucket_name, key):
    return {
        "eventName": name,
        "eventSource": "acs:oss",
        "region": REGION,
        "oss": {"bucket": {"name": bucket_name}, "object": {"key": key, "eTag": "X", "size": 1}},
    }


def test_oss_trigger_events_build_each_created_archive(oss, runtime, tmp_path):
    src = bucket(oss, "src")
    src.put_object("uploads/with-config.tar.gz", project_with(tmp_path, "a", {"target": "oss://site/from-config/"}))
    src.put_object("uploads/shop v2.tgz", project_with(tmp_path, "b", None))
    src.put_object("uploads/readme.txt", b"not an archive")
    body = {
        "events": [
            oss_event("ObjectCreated:PutObject", "src", "uploads/with-config.tar.gz"),
            oss_event("ObjectCreated:PostObject", "src", "uploads/shop%20v2.tgz"),  # keys come URL-encoded
            oss_event("ObjectCreated:PutObject", "src", "uploads/readme.txt"),
            oss_event("ObjectRemoved:DeleteObject", "src", "uploads/old.tar.gz"),
        ]
    }
    resp = runtime.invoke(body, headers=CREDS, request_id="evt", timeout=300)
    assert resp.status == 200, resp.body
    events = resp.json()["events"]
    assert [e.get("target") for e in events[:2]] == ["oss://site/from-config/", "oss://site/uploads/shop v2/"]
    assert events[0]["requestId"] == "evt-0" and events[1]["requestId"] == "evt-1"
    assert "not a .tar.gz, .tgz or .zip archive" in events[2]["skipped"]
    assert "is not a creation" in events[3]["skipped"]
    assert bucket(oss, "site").object_exists("from-config/index.html")
    assert bucket(oss, "site").object_exists("uploads/shop v2/index.html")


def test_an_archive_with_no_target_anywhere_is_a_clear_error(oss, tmp_path):
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint})
    try:
        bucket(oss, "src").put_object("lonely.tar.gz", project_with(tmp_path, "c", None))
        resp = rt.invoke({"events": [oss_event("ObjectCreated:PutObject", "src", "lonely.tar.gz")]}, headers=CREDS)
        message = function_error(resp, "InvalidRequest")["errorMessage"]
        assert "fcbuild.json" in message and "FCBUILD_TARGET" in message
    finally:
        rt.kill()


def test_a_time_triggers_payload_is_the_build_request(oss, runtime, tmp_path):
    bucket(oss, "src").put_object("nightly.tar.gz", project_with(tmp_path, "d", None))
    request = {"source": "oss://src/nightly.tar.gz", "target": "oss://site/nightly/"}
    body = {"triggerTime": "2026-11-28T02:00:00Z", "triggerName": "nightly", "payload": json.dumps(request)}
    resp = runtime.invoke(body, headers=CREDS)
    assert resp.status == 200, resp.body
    assert resp.json()["target"] == "oss://site/nightly/"


def test_the_project_config_file_under_the_request(oss, runtime, tmp_path):
    config = {
        "build": {"env": {"SITE_TEXT": "from the file"}, "output_dir": "dist"},
        "deploy": {"cache_control": [{"pattern": "*.svg", "value": "public, max-age=60"}]},
    }
    bucket(oss, "src").put_object("configured.tar.gz", project_with(tmp_path, "e", config))
    request = {"source": "oss://src/configured.tar.gz", "target": "oss://site/configured/"}
    result = runtime.invoke(request, headers=CREDS).json()
    assert result["config"]["file"] == ["build.env", "build.output_dir", "deploy.cache_control"]
    assert bucket(oss, "site").head_object("configured/favicon.svg").headers["Cache-Control"] == "public, max-age=60"
    js = [
        o.key for o in oss2.ObjectIteratorV2(bucket(oss, "site"), prefix="configured/assets/") if o.key.endswith(".js")
    ]
    assert any(b"from the file" in bucket(oss, "site").get_object(k).read() for k in js)
    override = runtime.invoke({**request, "build": {"env": {"SITE_TEXT": "from the request"}}}, headers=CREDS).json()
    assert "build.env" in override["config"]["request"] and "build.output_dir" in override["config"]["file"]
    bad = {"build": {"timeout_s": "soon"}}
    bucket(oss, "src").put_object("badconfig.tar.gz", project_with(tmp_path, "f", bad))
    resp = runtime.invoke({"source": "oss://src/badconfig.tar.gz", "target": "oss://site/bad/"}, headers=CREDS)
    assert function_error(resp, "InvalidSource")["errorMessage"].startswith("fcbuild.json: build.timeout_s")


def test_builds_deploy_only_where_the_function_allows(oss, runtime, tmp_path):
    bucket(oss, "src").put_object("elsewhere.tar.gz", project_with(tmp_path, "g", {"target": "oss://other/pwned/"}))
    direct = runtime.invoke({"source": "oss://src/elsewhere.tar.gz", "target": "oss://other/x/"}, headers=CREDS)
    assert "FCBUILD_ALLOWED_TARGETS" in function_error(direct, "AccessDenied")["errorMessage"]
    resp = runtime.invoke({"events": [oss_event("ObjectCreated:PutObject", "src", "elsewhere.tar.gz")]}, headers=CREDS)
    events = json.loads(function_error(resp, "AccessDenied")["errorMessage"])["events"]
    assert events[0]["errorType"] == "AccessDenied" and "oss://other/pwned/" in events[0]["errorMessage"]
    assert not list(oss2.ObjectIteratorV2(bucket(oss, "other")))
