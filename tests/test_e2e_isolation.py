"""A build is hostile code: tests/fixtures/hostile tries, from its preinstall script and from its
build, to read the function's credentials, outlive its step, publish what is not its output, write
into an enclosing repository, fill the disk and poison later builds of other sites. Every test goes
through the real fcbuild process (source, or the frozen binary with FC_RUNTIME_BIN) as root, as FC
runs it, except the one that runs it as another user on purpose."""

from __future__ import annotations

import concurrent.futures
import json
import os
import pwd
import subprocess
import time
import urllib.error
import urllib.request

import oss2
import pytest

from localoss import LocalOss
from tests.archives import FIXTURES, _tar, pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import function_error, runtime_command, shared_dir, start_runtime

HOSTILE = os.path.join(FIXTURES, "hostile")
TINY = os.path.join(FIXTURES, "tiny")
HEADER_CREDS = {
    "x-fc-access-key-id": STS.access_key_id,
    "x-fc-access-key-secret": STS.access_key_secret,
    "x-fc-security-token": STS.security_token,
}
# The function's own credentials, in its environment only (as FC 3.0 passes them). Valid too.
ENV_CREDS = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.env-key-id-4f3e",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "env-secret-value-9a8b7c",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "env-security-token-6d5c4b",
}
SECRETS = [*HEADER_CREDS.values(), *ENV_CREDS.values()]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="FC runs the runtime as root; these tests need root")


@pytest.fixture(scope="module")
def oss(tmp_path_factory):
    from localoss import Account

    env_account = Account(*ENV_CREDS.values())
    root = tmp_path_factory.mktemp("oss")
    with LocalOss(str(root), buckets=["src", "site"], accounts=[AK, STS, env_account], region=REGION) as server:
        src = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), server.endpoint, "src", region=REGION)
        src.put_object("hostile.tar.gz", pack_tar(HOSTILE))
        src.put_object("tiny.tar.gz", pack_tar(TINY))
        yield server


def runtime_env(oss, **extra):
    return {"FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_UPLOAD_MARGIN_S": "2", **ENV_CREDS, **extra}


@pytest.fixture(scope="module")
def runtime(oss):
    rt = start_runtime(runtime_env(oss))
    yield rt
    rt.kill()


def site(oss):
    return oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "site", region=REGION)


def attack(runtime, prefix, attacks, evidence, *, build=None, headers=HEADER_CREDS, source="hostile", **kw):
    build = dict(build or {})
    env = {"ATTACK": attacks, "EVIDENCE": evidence, **build.pop("env", {})}
    event = {
        "source": f"oss://src/{source}.tar.gz",
        "target": {"bucket": "site", "prefix": prefix},
        "build": {"env": env, **build},
    }
    return runtime.invoke(event, headers=headers, timeout=300, **kw)


def report(evidence, phase):
    with open(os.path.join(evidence, f"report-{phase}.json")) as f:
        return json.load(f)


def everything_in(oss, bucket):
    b = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, bucket, region=REGION)
    return b"\n".join(b.get_object(o.key).read() for o in oss2.ObjectIteratorV2(b))


def process_tree(pid):
    """`pid` and its descendants, now."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_no_credential_reaches_a_build(oss, runtime):
    evidence = shared_dir()
    runtime_pids = set(process_tree(runtime.proc.pid))
    resp = attack(runtime, "creds/", "probe", evidence, headers={**HEADER_CREDS, "x-fc-invocation-type": "Async"})
    assert resp.status == 200, resp.body
    result = resp.json()
    assert result["isolation"]["uid"] not in (None, 0)
    for phase in ("preinstall", "build"):
        seen = report(evidence, phase)
        assert seen["self"] is True  # the probe can read what it may: its own environment
        assert seen["uid"] == result["isolation"]["uid"]
        assert not [k for k in seen["env"] if k.startswith(("ALIBABA_CLOUD", "FC_", "FCBUILD_"))]
        for pid in runtime_pids:  # every process of the runtime (the bootloaders too, when frozen)
            assert seen["procs"][str(pid)]["environ"] != "ok", (phase, pid)
            assert seen["procs"][str(pid)]["mem"] != "ok", (phase, pid)
    published = everything_in(oss, "site")
    assert site(oss).get_object("creds/leak.txt").read()  # what the probe could read was published
    places = {
        "answer": resp.body,
        "runtime log": runtime.output().encode(),
        "bucket (site, build log, status, manifest)": published,
        "evidence": b"".join(_read(os.path.join(evidence, n)) for n in os.listdir(evidence)),
    }
    for where, text in places.items():
        for secret in SECRETS:
            assert secret.encode() not in text, f"a credential in the {where}"


def test_nothing_a_build_starts_outlives_its_step(oss, runtime):
    evidence = shared_dir()
    rid = f"linger-{time.monotonic_ns()}"
    resp = attack(runtime, "linger/", "linger", evidence, request_id=rid)
    assert resp.status == 200, resp.body
    uid = resp.json()["isolation"]["uid"]
    pids = []
    for name in os.listdir(evidence):
        if name.startswith(("pids-", "double-", "nohup-")):
            with open(os.path.join(evidence, name)) as f:
                pids += [int(x) for x in f.read().split()]
    assert len(pids) >= 8  # two phases, four escapes each
    assert not [p for p in pids if alive(p)]
    assert not [p for p in os.listdir("/proc") if p.isdigit() and alive(p) and os.stat(f"/proc/{p}").st_uid == uid]
    assert "killed " in runtime.output()
    time.sleep(0.5)  # the loud escapee printed every 100 ms while it lived
    after_end = runtime.output().split(f"FC Invoke End RequestId: {rid}", 1)[1]
    assert "LINGER-MARK" not in after_end


def test_a_build_gets_nothing_from_the_runtime_it_runs_under(oss):
    """Steps: a runtime listening on every address (as on FC); the hostile build's install script
    and build command ask it, on 127.0.0.1 and 127.0.0.2, for a build and deploy of another site
    (with no credentials of their own: the runtime would use the function's), /initialize, /health,
    /pre-stop, and the legacy `POST /` with a control path. Every connection is closed unanswered
    and logged, nothing is deployed at that target, the runtime keeps running and builds the next
    request."""
    rt = start_runtime(runtime_env(oss), args=["0"])
    try:
        evidence = shared_dir()
        env = {
            "RUNTIME_PORT": str(rt.port),
            "RUNTIME_HOSTS": "127.0.0.1,127.0.0.2",
            "RUNTIME_SOURCE": "oss://src/tiny.tar.gz",
            "RUNTIME_TARGET": "oss://site/door-pwned/",
        }
        resp = attack(rt, "door/", "call-runtime", evidence, build={"env": env})
        assert resp.status == 200, resp.body
        for phase in ("preinstall", "build"):
            answers = report(evidence, phase)["callRuntime"]
            assert len(answers) == 10, answers
            for answer in answers:
                assert "status" not in answer, (phase, answer)
                assert answer["error"] in ("ECONNRESET", "EPIPE", "socket hang up"), (phase, answer)
        assert not list(oss2.ObjectIteratorV2(site(oss), prefix="door-pwned/"))
        log = rt.output()
        assert log.count("refused a connection from") >= 20
        assert "a build user" in log
        assert "FC Invoke Start RequestId: from-a-build" not in log
        assert rt.request("GET", "/health").json()["status"] == "ok"
        after = rt.invoke({"source": "oss://src/tiny.tar.gz", "target": "oss://site/door-after/"}, headers=HEADER_CREDS)
        assert after.status == 200, after.body
    finally:
        rt.kill()


def test_output_dir_through_a_link_is_refused(oss, runtime):
    evidence = shared_dir()
    resp = attack(runtime, "link/", "escape-link", evidence, build={"output_dir": "lnk/etc"})
    assert "leads out of the project" in function_error(resp, "BuildFailed")["errorMessage"]
    assert not list(oss2.ObjectIteratorV2(site(oss), prefix="link/passwd"))


def test_a_hard_link_to_a_file_the_build_does_not_own_is_not_published(oss, runtime):
    evidence = shared_dir()
    target = os.path.join(evidence, "system-file")
    with open(target, "w") as f:
        f.write("root's file, writable by all\n")
    os.chmod(target, 0o666)  # the only kind a build user may hard-link (fs.protected_hardlinks)
    resp = attack(runtime, "hard/", "hardlink", evidence, build={"env": {"HARDLINK_TARGET": target}})
    message = function_error(resp, "InvalidOutput")["errorMessage"]
    assert report(evidence, "build")["hardlink"] == "made"
    assert "p: not written by the build" in message
    assert not [o.key for o in oss2.ObjectIteratorV2(site(oss), prefix="hard/") if "/.fcbuild/" not in o.key]


def test_a_chain_of_archive_links_cannot_lead_out(oss, runtime):
    import tarfile

    def link(name, target):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        return info

    pkg = tarfile.TarInfo("p/package.json")
    body = b'{"scripts": {"build": "true"}}'
    pkg.size = len(body)
    archive = _tar([pkg, link("p/a/y", ".."), link("p/a/l1", "y/.."), link("p/a/l2", "l1/..")], {pkg.name: body})
    oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "src", region=REGION).put_object(
        "chain.tar.gz", archive
    )
    resp = runtime.invoke({"source": "oss://src/chain.tar.gz", "target": "oss://site/chain/"}, headers=HEADER_CREDS)
    assert "leads out of the project" in function_error(resp, "InvalidSource")["errorMessage"]


def test_a_build_cannot_swap_the_runtimes_build_log_for_a_file_it_may_not_read(oss, runtime, tmp_path):
    """The runtime (root) reads the build log back while the build runs, and puts it to OSS: were its
    name swapped for a link, root would publish whatever the link names."""
    marker = f"ROOT-ONLY-{os.getpid()}-{time.monotonic_ns()}"
    secret = tmp_path / "root-only.txt"
    secret.write_text(marker)
    secret.chmod(0o600)
    evidence = shared_dir()
    resp = attack(runtime, "swap/", "swap-log", evidence, build={"env": {"SWAP_TO": str(secret)}}, request_id="swap-1")
    assert resp.status == 200, resp.body
    tries = report(evidence, "build")["swapLog"]
    assert tries, "the build found no build log above its folder"  # the runtime's is where it looked
    for t in tries:
        assert {t["read"], t["rename"], t["unlink"], t["symlink"], t["append"]} <= {
            "EACCES",
            "EPERM",
            "ENOENT",
            "EEXIST",
        }, t
    saved = site(oss).get_object("swap/.fcbuild/logs/swap-1.log").read()
    assert b"SWAP-LOG-LINE" in saved and b"WRITTEN-BY-THE-BUILD" not in saved
    assert marker.encode() not in everything_in(oss, "site") and secret.read_text() == marker


def test_what_fcbuild_keeps_for_itself_is_private(oss, runtime):
    resp = runtime.invoke(
        {"source": "oss://src/tiny.tar.gz", "target": "oss://site/private/"},
        headers={**HEADER_CREDS, "x-fc-invocation-type": "Async"},
        request_id="private-1",
    )
    assert resp.status == 200, resp.body
    b = site(oss)
    ours = [o.key for o in oss2.ObjectIteratorV2(b, prefix="private/.fcbuild/")]
    assert {"private/.fcbuild/manifest.json", "private/.fcbuild/logs/private-1.log"} <= set(ours)
    assert "private/.fcbuild/status/private-1.json" in ours and "private/.fcbuild/lease/000000000000.json" in ours
    for key in ours:
        assert b.get_object_acl(key).acl == "private", key
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(oss.site_url("site", key))
        assert denied.value.code == 403
    with urllib.request.urlopen(oss.site_url("site", "private/")) as page:
        assert page.status == 200


def test_builds_beyond_the_slots_wait_then_are_told_busy(oss):
    rt = start_runtime(runtime_env(oss, FCBUILD_MAX_BUILDS="1", FCBUILD_QUEUE_WAIT_S="1"))
    try:
        slow = {
            "source": "oss://src/tiny.tar.gz",
            "target": "oss://site/busy-a/",
            "build": {"env": {"BUILD_DELAY_MS": "4000"}},
        }
        quick = {"source": "oss://src/tiny.tar.gz", "target": "oss://site/busy-b/"}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(rt.invoke, slow, headers=HEADER_CREDS, fresh=True)
            time.sleep(1.0)
            second = pool.submit(rt.invoke, quick, headers=HEADER_CREDS, fresh=True)
            assert "build slot" in function_error(second.result(), "Busy")["errorMessage"]
            assert first.result().status == 200
    finally:
        assert rt.stop() == 0


def test_a_hundred_concurrent_invokes_are_all_answered_with_bounded_memory(oss):
    rt = start_runtime(runtime_env(oss, FCBUILD_MAX_BUILDS="1", FCBUILD_QUEUE_WAIT_S="2"))
    try:
        event = {"source": "oss://src/tiny.tar.gz", "target": "oss://site/hundred/"}
        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            answers = list(pool.map(lambda _: rt.invoke(event, headers=HEADER_CREDS, fresh=True), range(100)))
        kinds = [a.json().get("errorType", "ok") if a.status != 200 else "ok" for a in answers]
        assert set(kinds) <= {"ok", "Busy", "Superseded"} and "ok" in kinds, kinds  # an older one may get its turn last
        rss_kb = max(_rss_kb(pid) for pid in process_tree(rt.proc.pid))
        assert rss_kb < 400 * 1024, f"the runtime grew to {rss_kb} KiB"
        assert rt.request("GET", "/health").status == 200
    finally:
        assert rt.stop() == 0


def _rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def test_a_full_disk_is_disk_full_and_the_log_is_still_saved(oss):
    mount = shared_dir("fcbuild-small-disk-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", mount], check=True)
    try:
        rt = start_runtime(runtime_env(oss, FCBUILD_WORKSPACE_ROOT=os.path.join(mount, "ws"), FCBUILD_MIN_FREE_MB="8"))
        try:
            evidence = shared_dir()
            resp = attack(rt, "full/", "fill-disk", evidence, request_id="full-1")
            message = function_error(resp, "DiskFull")["errorMessage"]
            assert "disk" in message and "raise the function's disk size" in message
            log = site(oss).get_object("full/.fcbuild/logs/full-1.log").read().decode()
            assert "still printing after the disk filled, line 1999" in log  # the output kept draining
            again = rt.invoke(
                {"source": "oss://src/tiny.tar.gz", "target": "oss://site/after-full/"}, headers=HEADER_CREDS
            )
            assert again.status == 200, again.body  # the workspace was cleaned up
        finally:
            assert rt.stop() == 0
    finally:
        subprocess.run(["umount", "-l", mount], check=False)


@pytest.fixture(scope="module")
def limited(oss):
    """A runtime with small output limits: 200 files, a build log of 1 MB."""
    rt = start_runtime(runtime_env(oss, FCBUILD_MAX_FILES="200", FCBUILD_LOG_MAX_MB="1"))
    yield rt
    rt.kill()


@pytest.mark.parametrize(
    "attacks, env, expected",
    [
        ("many-files", {"MANY_FILES": "300"}, "more than 200 files (FCBUILD_MAX_FILES)"),
        ("deep", {}, "a path of"),
        ("bad-name", {}, "a name that is not UTF-8"),
        ("nested-meta", {}, "docs/.fcbuild: a .fcbuild folder or file"),
    ],
)
def test_an_output_that_cannot_be_deployed_is_refused_whole_with_a_typed_error(oss, limited, attacks, env, expected):
    """More files than FCBUILD_MAX_FILES, a folder 5,000 deep, a name that is not UTF-8, a `.fcbuild`
    below the top: InvalidOutput (never Internal) naming it, nothing published, the status object ends
    `failed`, and the instance builds the next request."""
    prefix = f"out-{attacks}/"
    rid = f"out-{attacks}-1"
    resp = attack(limited, prefix, attacks, shared_dir(), build={"env": env}, request_id=rid)
    assert expected in function_error(resp, "InvalidOutput")["errorMessage"]
    published = [o.key for o in oss2.ObjectIteratorV2(site(oss), prefix=prefix)]
    assert published and all(k.startswith(prefix + ".fcbuild/") for k in published), published
    status = json.loads(site(oss).get_object(f"{prefix}.fcbuild/status/{rid}.json").read())
    assert status["status"] == "failed" and status["error"]["errorType"] == "InvalidOutput", status
    after = limited.invoke(
        {"source": "oss://src/tiny.tar.gz", "target": f"oss://site/after-{attacks}/"}, headers=HEADER_CREDS
    )
    assert after.status == 200, after.body


def test_a_build_that_prints_without_end_is_logged_up_to_the_cap_with_flat_memory(oss, limited):
    """The build prints 200 MB: its saved log and the runtime's own log keep the first 1 MB
    (FCBUILD_LOG_MAX_MB) and a summary with the last lines; the runtime's peak memory stays far below
    what it printed."""
    resp = attack(limited, "flood/", "flood", shared_dir(), build={"env": {"FLOOD_MB": "200"}}, request_id="flood-1")
    assert resp.status == 200, resp.body
    saved = site(oss).get_object("flood/.fcbuild/logs/flood-1.log").read()
    assert len(saved) < 1.1 * 1024 * 1024, len(saved)
    assert b"passed FCBUILD_LOG_MAX_MB (1 MB) and were not kept" in saved and b"LAST-FLOOD-LINE" in saved
    assert len(limited.output()) < 3 * 1024 * 1024
    python_pid = int(limited.output().split("(pid ", 1)[1].split(")", 1)[0])  # under the bootloaders, when frozen
    with open(f"/proc/{python_pid}/status") as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    assert peak_kb < 300 * 1024, peak_kb


def test_a_fork_loop_stops_at_the_build_users_limit_and_the_runtime_keeps_answering(oss):
    """The build starts sleeping processes until the system refuses: it is refused at
    FCBUILD_BUILD_MAX_PROCS (processes and threads of its user), the runtime answers /health all the
    while, and nothing the loop started outlives the step."""
    rt = start_runtime(runtime_env(oss, FCBUILD_BUILD_MAX_PROCS="200"))
    try:
        evidence = shared_dir()
        answers = []
        done = concurrent.futures.ThreadPoolExecutor(1).submit(attack, rt, "forks/", "fork-loop", evidence, fresh=True)
        while not done.done():
            answers.append(rt.request("GET", "/health", fresh=True, timeout=10).status)
            time.sleep(0.05)
        resp = done.result()
        assert resp.status == 200, resp.body
        loop = report(evidence, "build")["forkLoop"]
        assert loop["refused"] == "EAGAIN" and loop["spawned"] < 200, loop
        assert answers and set(answers) == {200}
        uid = resp.json()["isolation"]["uid"]
        assert not [p for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == uid]
    finally:
        rt.kill()


def _uid_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    except (OSError, StopIteration):
        return None


def test_two_runtimes_on_one_host_never_share_build_users(oss):
    """Builds end by killing every process of their uid, so two runtimes sharing one would kill each
    other's builds. A range named explicitly that another runtime holds is refused at start (exit 2,
    saying so); the default range moves to the next free block, and both build."""
    first = start_runtime(runtime_env(oss, FCBUILD_BUILD_UIDS="29000-29007"))
    try:
        with pytest.raises(RuntimeError) as refused:
            start_runtime(runtime_env(oss, FCBUILD_BUILD_UIDS="29004-29011"))
        assert "exit 2" in str(refused.value)
        assert "uid 29004 is used by another fcbuild runtime on this host" in str(refused.value)
        a = start_runtime(runtime_env(oss, FCBUILD_BUILD_UIDS=""))  # the default range
        b = start_runtime(runtime_env(oss, FCBUILD_BUILD_UIDS=""))
        try:
            assert "this one takes 20064-20127" in b.output() or "this one takes" in a.output()
            tiny = {"source": "oss://src/tiny.tar.gz"}
            uids = set()
            for rt, prefix in ((a, "two-a/"), (b, "two-b/")):
                resp = rt.invoke({**tiny, "target": f"oss://site/{prefix}"}, headers=HEADER_CREDS)
                assert resp.status == 200, resp.body
                uids.add(resp.json()["isolation"]["uid"])
            assert len(uids) == 2
        finally:
            a.kill()
            b.kill()
    finally:
        first.kill()


def _warm_trees(rt):
    root = os.path.join(rt.workspace_root, "cache", "deps")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def test_a_full_disk_is_recovered_before_the_next_build(oss):
    """On a 48 MB disk: a build fills it through node_modules and fails (DiskFull): its tree is not
    kept, and the next build runs. A good build leaves 20 MB of node_modules warm; the disk is then
    filled from outside: the next build removes the warm tree to get room, says so, and runs."""
    mount = shared_dir("fcbuild-small-disk-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", mount], check=True)
    try:
        env = runtime_env(oss, FCBUILD_WORKSPACE_ROOT=os.path.join(mount, "ws"), FCBUILD_MIN_FREE_MB="8")
        rt = start_runtime({**env, "FCBUILD_CACHE_MAX_MB": "100"})
        try:
            resp = attack(rt, "fill-nm/", "fill-disk", shared_dir(), build={"env": {"FILL_INTO": "node_modules"}})
            function_error(resp, "DiskFull")
            assert _warm_trees(rt) == []
            tiny = {"source": "oss://src/tiny.tar.gz", "target": "oss://site/after-fill-nm/"}
            assert rt.invoke(tiny, headers=HEADER_CREDS).status == 200
            resp = attack(rt, "big-nm/", "big-deps", shared_dir(), build={"env": {"BIG_MB": "20"}})
            assert resp.status == 200, resp.body
            deadline = time.monotonic() + 30
            while not _warm_trees(rt) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(_warm_trees(rt)) == 1
            with open(os.path.join(mount, "outside-filler"), "wb") as f:  # what else fills a disk
                while os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize > 4 * 2**20:
                    f.write(b"\0" * 2**20)
            again = rt.invoke({**tiny, "target": "oss://site/after-big-nm/"}, headers=HEADER_CREDS)
            assert again.status == 200, again.body
            assert "removed 1 warm dependency tree(s)" in rt.output()
        finally:
            assert rt.stop() == 0
    finally:
        subprocess.run(["umount", "-l", mount], check=False)


def test_a_sparse_file_never_enters_the_dependency_cache(oss):
    """node_modules holds an 8 GiB file that is a hole: the build succeeds, the tree is refused by
    the cache (never packed for OSS), and nothing else is evicted for it."""
    rt = start_runtime(runtime_env(oss, FCBUILD_CACHE_MAX_MB="16000"))
    try:
        resp = attack(rt, "sparse/", "sparse-deps", shared_dir())
        assert resp.status == 200, resp.body
        deadline = time.monotonic() + 30
        while "was not kept" not in rt.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "the tree was not kept: it holds a sparse file (node_modules/sparse.bin)" in rt.output()
        assert _warm_trees(rt) == []
        assert not [o.key for o in oss2.ObjectIteratorV2(site(oss), prefix="sparse/.fcbuild/deps/")]
    finally:
        rt.kill()


def test_no_build_finds_or_writes_an_enclosing_git_repository(oss):
    repo = shared_dir("fcbuild-repo-")
    os.chmod(repo, 0o755)
    subprocess.run(["git", "init", "-q", repo], check=True)
    rt = start_runtime(runtime_env(oss, FCBUILD_WORKSPACE_ROOT=os.path.join(repo, "ws")))
    try:
        evidence = shared_dir()
        resp = attack(rt, "git/", "git", evidence)
        assert resp.status == 200, resp.body
        for phase in ("preinstall", "build"):
            git = report(evidence, phase)["git"]
            assert git["revParse"].startswith("failed"), git
            assert git["hook"] != "written", git
        assert not os.path.exists(os.path.join(repo, ".git", "hooks", "pre-commit"))
    finally:
        assert rt.stop() == 0


def test_one_sites_build_cannot_poison_the_next_sites(oss, runtime):
    first = shared_dir()
    resp = attack(runtime, "poison-a/", "poison", first)
    assert resp.status == 200, resp.body
    second = shared_dir()
    resp = attack(runtime, "poison-b/", "inspect", second)
    assert resp.status == 200, resp.body
    for phase in ("preinstall", "build"):
        seen = report(second, phase)["inspect"]
        assert seen["home"] == [] or ".npmrc" not in seen["home"], seen
        assert not seen["npmCachePoison"] and not seen["tmpPoison"], seen
        assert "127.0.0.1:9" not in seen["npmRegistry"], seen


def test_a_runtime_that_is_not_root_still_hides_its_memory_and_says_builds_share_its_user(oss):
    nobody = pwd.getpwnam("nobody")
    env = runtime_env(oss)
    command = runtime_command()
    if not os.environ.get("FC_RUNTIME_BIN"):  # pyenv's interpreter lives under /root; the system's is the same 3.11
        import sysconfig

        command = ["/usr/bin/python3.11", command[1]]
        env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    rt = start_runtime(env, user=nobody.pw_uid, command=command)
    try:
        assert "builds run as this runtime's own user" in rt.output()
        python_pid = int(rt.output().split("(pid ", 1)[1].split(")", 1)[0])
        evidence = shared_dir()
        # The build shares the runtime's user here: the runtime tells it apart as its descendant.
        door = {"RUNTIME_PORT": str(rt.port), "RUNTIME_SOURCE": "oss://src/tiny.tar.gz"}
        door["RUNTIME_TARGET"] = "oss://site/nonroot-pwned/"
        resp = attack(rt, "nonroot/", "probe,call-runtime", evidence, build={"env": door})
        assert resp.status == 200, resp.body
        assert resp.json()["isolation"]["uid"] is None
        for phase in ("preinstall", "build"):
            seen = report(evidence, phase)
            assert seen["uid"] == nobody.pw_uid
            assert seen["procs"][str(python_pid)]["environ"] != "ok"
            assert seen["procs"][str(python_pid)]["mem"] != "ok"
            assert [a for a in seen["callRuntime"] if "status" in a] == [], seen["callRuntime"]
        assert "started by a build" in rt.output()
        assert not list(oss2.ObjectIteratorV2(site(oss), prefix="nonroot-pwned/"))
        for secret in HEADER_CREDS.values():
            assert secret.encode() not in everything_in(oss, "site")
    finally:
        assert rt.stop() == 0


def test_every_credential_the_runtime_has_seen_is_redacted_in_every_request(oss, runtime):
    """Request one brings credentials in its headers; request two, with other credentials, prints
    request one's secret and the environment's (as a build that found them would): both are
    redacted from its answer, the runtime log and its saved build log."""
    first = runtime.invoke({"source": "oss://src/tiny.tar.gz", "target": "oss://site/seen-1/"}, headers=HEADER_CREDS)
    assert first.status == 200, first.body
    other = {
        "x-fc-access-key-id": ENV_CREDS["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        "x-fc-access-key-secret": ENV_CREDS["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        "x-fc-security-token": ENV_CREDS["ALIBABA_CLOUD_SECURITY_TOKEN"],
    }
    leaked = {"A": STS.access_key_secret, "B": ENV_CREDS["ALIBABA_CLOUD_SECURITY_TOKEN"], "BUILD_FAIL": "1"}
    event = {
        "source": "oss://src/tiny.tar.gz",
        "target": "oss://site/seen-2/",
        "build": {"env": {**leaked, "PRINT_ENV": "1"}},
    }
    resp = runtime.invoke(event, headers=other, request_id="seen-2")
    body = function_error(resp, "BuildFailed")
    log = site(oss).get_object("seen-2/.fcbuild/logs/seen-2.log").read().decode()
    assert "env A=***" in log and "env B=***" in log
    for text in (resp.body.decode(), runtime.output(), log):
        assert STS.access_key_secret not in text and ENV_CREDS["ALIBABA_CLOUD_SECURITY_TOKEN"] not in text
    assert body["requestId"] == "seen-2"
