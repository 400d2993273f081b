"""The dependency cache through the real fcbuild process: warm (instance disk) and cold (OSS) hits,
a changed lockfile missing, corrupt and foreign entries ignored and replaced."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time

import oss2
import pytest

from localoss import LocalOss
from tests.archives import FIXTURES, pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import start_runtime
from tests.test_e2e_build import CREDS

WITHDEPS = os.path.join(FIXTURES, "withdeps")


@pytest.fixture
def oss(tmp_path):
    with LocalOss(str(tmp_path / "oss"), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as server:
        yield server


def bucket(oss, name):
    return oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, name, region=REGION)


def runtime(oss, tmp_path, name):
    """A fresh instance: its own workspace root, so nothing warm."""
    return start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint}, workdir=str(tmp_path / name))


def build(rt, key="withdeps.tar.gz", prefix="app/"):
    resp = rt.invoke({"source": f"oss://src/{key}", "target": {"bucket": "site", "prefix": prefix}}, headers=CREDS)
    assert resp.status == 200, resp.body
    return resp.json()


def cache_objects(oss, prefix="app/"):
    return [o.key for o in oss2.ObjectIteratorV2(bucket(oss, "site"), prefix=f"{prefix}.fcbuild/deps/")]


def wait_for_cache_object(oss, prefix="app/"):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = cache_objects(oss, prefix)
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("the dependency cache was not saved to OSS")


def test_warm_then_cold_instance(oss, tmp_path):
    bucket(oss, "src").put_object("withdeps.tar.gz", pack_tar(WITHDEPS))
    first_rt = runtime(oss, tmp_path, "one")
    try:
        first = build(first_rt)
        assert (first["cache"]["hit"], first["cache"]["saved"]) == ("miss", "warm+oss")
        assert first["packageManager"]["lockfile"] == "package-lock.json"
        key = wait_for_cache_object(oss)
        second = build(first_rt)
        assert second["cache"]["hit"] == "warm"
        assert second["files"]["uploaded"] == 0
        assert "[install] $ npm install --prefer-offline --no-audit --no-fund" in first_rt.output()
    finally:
        assert first_rt.stop() == 0
    cold_rt = runtime(oss, tmp_path, "two")
    try:
        third = build(cold_rt)
        assert third["cache"]["hit"] == "oss"
        assert third["cache"]["saved"] == "warm"  # already in OSS: not uploaded again
    finally:
        assert cold_rt.stop() == 0
    assert cache_objects(oss) == [key]
    body = bucket(oss, "site").get_object(key).read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
    assert ".fcbuild-cache.json" in names and "node_modules/greeting-local/index.js" in names
    assert "node_modules/.bin/greet" in names  # links inside the tree survive the round trip


def test_changed_lockfile_misses(oss, tmp_path):
    bucket(oss, "src").put_object("withdeps.tar.gz", pack_tar(WITHDEPS))
    project = tmp_path / "changed"
    shutil.copytree(WITHDEPS, project)
    with open(project / "package-lock.json", "a") as f:
        f.write("\n")  # the same dependencies, other bytes: another key
    bucket(oss, "src").put_object("changed.tar.gz", pack_tar(str(project)))
    rt = runtime(oss, tmp_path, "rt")
    try:
        assert build(rt)["cache"]["hit"] == "miss"
        assert build(rt)["cache"]["hit"] == "warm"
        changed = build(rt, "changed.tar.gz")
        assert changed["cache"]["hit"] == "miss"
        assert changed["cache"]["key"] != build(rt)["cache"]["key"]
    finally:
        assert rt.stop() == 0


@pytest.mark.parametrize(
    "kind",
    ["garbage", "truncated", "foreign"],
)
def test_bad_oss_entry_is_ignored_and_replaced(oss, tmp_path, kind):
    bucket(oss, "src").put_object("withdeps.tar.gz", pack_tar(WITHDEPS))
    seed = runtime(oss, tmp_path, "seed")
    try:
        build(seed)
        key = wait_for_cache_object(oss)
    finally:
        assert seed.stop() == 0  # /pre-stop flushes the background save
    good = bucket(oss, "site").get_object(key).read()
    if kind == "garbage":
        bad = b"\x1f\x8b not really gzip"
    elif kind == "truncated":
        bad = good[: len(good) // 2]
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo("node_modules/evil.js")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
        bad = buf.getvalue()
    bucket(oss, "site").put_object(key, bad)
    rt = runtime(oss, tmp_path, "after")
    try:
        result = build(rt)
        assert result["cache"]["hit"] == "miss"
        assert "OSS entry ignored" in result["cache"]["note"]
        assert result["cache"]["saved"] == "warm+oss"
    finally:
        assert rt.stop() == 0
    replaced = bucket(oss, "site").get_object(key).read()
    assert replaced != bad
    with tarfile.open(fileobj=io.BytesIO(replaced)) as tar:
        assert ".fcbuild-cache.json" in tar.getnames()


def test_a_project_without_a_lockfile_gets_a_cache_too(oss, tmp_path):
    """Keyed by package.json's dependencies: the install still runs on the restored tree."""
    project = tmp_path / "nolock"
    shutil.copytree(WITHDEPS, project)
    (project / "package-lock.json").unlink()
    bucket(oss, "src").put_object("nolock.tar.gz", pack_tar(str(project)))
    rt = runtime(oss, tmp_path, "nolock")
    try:
        first = build(rt, "nolock.tar.gz", "nolock/")
        assert first["packageManager"]["lockfile"] == "none"
        assert first["cache"]["hit"] == "miss" and first["cache"]["saved"].startswith("warm")
        assert "no lockfile" in first["cache"]["note"]
        again = build(rt, "nolock.tar.gz", "nolock/")
        assert again["cache"]["hit"] == "warm" and again["files"]["uploaded"] == 0
        assert rt.output().count("[install] $ npm install") >= 2  # the install ran on the restored tree
    finally:
        assert rt.stop() == 0
