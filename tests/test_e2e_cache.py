"""The dependency cache through the real fcbuild process: warm (instance disk) and cold (OSS) hits,
a changed lockfile missing, corrupt, foreign and hostile entries ignored or unpacked harmlessly."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import tarfile
import time

import oss2
import pytest

from localoss import LocalOss
from tests.archives import FIXTURES, pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import start_runtime, workspace_root_for
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
    with tarfile.open(fileobj=io.BytesIO(body), ignore_zeros=True) as tar:  # the shards one after another
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


def shard(members: list[tuple[str, bytes | str, int]]) -> bytes:
    """One gzip member holding a tar of (name, bytes or a link's target, mode)."""
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb") as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "foreign", "no-index", "hostile"])
def test_bad_oss_entry_is_ignored_and_replaced(oss, tmp_path, kind):
    bucket(oss, "src").put_object("withdeps.tar.gz", pack_tar(WITHDEPS))
    seed = runtime(oss, tmp_path, "seed")
    try:
        build(seed)
        key = wait_for_cache_object(oss)
    finally:
        assert seed.stop() == 0  # /pre-stop flushes the background save
    site = bucket(oss, "site")
    good = site.get_object(key).read()
    shards = site.head_object(key).headers["x-oss-meta-fcbuild-shards"]
    with tarfile.open(fileobj=io.BytesIO(good)) as tar:
        marker = json.load(tar.extractfile(".fcbuild-cache.json"))
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o1777)  # anyone may write here: only the unpacking itself must refuse to
    if kind == "garbage":
        bad = b"\x1f\x8b not really gzip"
    elif kind == "truncated":
        bad = good[: len(good) // 2]
    elif kind == "foreign":
        bad = shard([("node_modules/evil.js", b"bad", 0o644)])
        shards = "0"
    elif kind == "no-index":
        bad = good
        shards = ""
    else:  # the right key, and members that try to leave the tree or gain privileges
        bad = shard(
            [
                (".fcbuild-cache.json", json.dumps(marker).encode(), 0o644),
                ("../escape.txt", b"x", 0o644),
                (f"{outside}/absolute.txt", b"x", 0o644),
                ("node_modules/link", str(outside), 0o777),
                ("node_modules/link/through.txt", b"x", 0o644),
                ("node_modules/suid", b"#!/bin/sh\nid\n", 0o4755),
            ]
        )
        shards = "0"
    site.put_object(key, bad, headers={"x-oss-meta-fcbuild-shards": shards} if shards else None)
    rt = runtime(oss, tmp_path, "after")
    try:
        result = build(rt)
        if kind == "hostile":
            # GNU tar refuses `..`, strips the leading `/`, and will not write through the link
            assert result["cache"]["hit"] == "miss" and "Member name contains '..'" in result["cache"]["note"]
            assert list(outside.iterdir()) == []
            root = workspace_root_for(str(tmp_path / "after"))
            for folder, _, files in os.walk(root):
                for name in files:
                    st = os.lstat(os.path.join(folder, name))
                    assert name != "escape.txt" and not (stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_ISUID)
        else:
            assert result["cache"]["hit"] == "miss"
            assert "OSS entry ignored" in result["cache"]["note"]
            assert result["cache"]["saved"] == "warm+oss"
    finally:
        assert rt.stop() == 0
    if kind != "hostile":
        replaced = bucket(oss, "site").get_object(key).read()
        assert replaced != bad


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
