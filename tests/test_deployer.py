"""Deploys through the real oss2 client against the local OSS server: two phases under a lease,
all or nothing under a fault at any request, newer wins, drift repair, rollback, provenance."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import time

import oss2
import pytest

import deployer
import oss_io
from context import Credentials
from deploy_plan import IMMUTABLE, REVALIDATE, scan_tree
from errors import DownloadFailed, Superseded, UploadFailed
from localoss import FaultRule
from tests.conftest import AK, REGION, STS

log = logging.getLogger("test")

V1 = {
    "index.html": b'<!doctype html><script src="assets/index-BPvgi06w.js"></script><link href="style.css">',
    "about/index.html": b"<p>about v1</p>",
    "assets/index-BPvgi06w.js": b"console.log('v1')",
    "style.css": b"body{color:red}",
    "robots.txt": b"User-agent: *\n",
    "favicon.svg": b"<svg>1</svg>",
}
V2 = {
    "index.html": b'<!doctype html><script src="assets/index-Cu-Bo-gk.js"></script><link href="style.css">',
    "about/index.html": b"<p>about v2</p>",
    "assets/index-Cu-Bo-gk.js": b"console.log('v2')",
    "style.css": b"body{color:blue}",
    "robots.txt": b"User-agent: *\nDisallow: /x\n",
    "favicon.svg": b"<svg>2</svg>",
    "new-page.html": b"<p>new</p>",
}


def client(oss, **kw):
    kw.setdefault("retries", 3)
    return oss_io.OssClient(
        Credentials(STS.access_key_id, STS.access_key_secret, STS.security_token), REGION, oss.endpoint, **kw
    )


def raw(oss):
    return oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "site", region=REGION)


def tree(tmp_path, name, files):
    root = tmp_path / name
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return str(root)


def run(oss, root, prefix, release, *, started=None, storage=None, keep=3, ttl=60.0, record=None):
    return deployer.deploy(
        storage or client(oss),
        deployer.Target("site", prefix, keep),
        root,
        scan_tree(root),
        claim=deployer.Claim(release, started if started is not None else time.time()),
        record=record or {"source": {"url": f"oss://src/{release}.tar.gz"}},
        cache_rules=(),
        deadline=time.monotonic() + 120,
        log=log,
        lease_ttl_s=ttl,
    )


def live(oss, prefix):
    """What a visitor can get: every object under the prefix but fcbuild's own folder."""
    b = raw(oss)
    return {
        o.key[len(prefix) :]: b.get_object(o.key).read()
        for o in oss2.ObjectIteratorV2(b, prefix=prefix)
        if not o.key.startswith(prefix + ".fcbuild/")
    }


def serves(oss, prefix, version):
    """The live site is `version`: every file of it is there as it is, and no page, style or other
    stable-name file of another version is (content-addressed files of other releases may stay)."""
    site = live(oss, prefix)
    stable = {k: v for k, v in site.items() if not k.startswith("assets/")}
    return all(site.get(k) == v for k, v in version.items()) and stable == {
        k: v for k, v in version.items() if not k.startswith("assets/")
    }


def manifest(oss, prefix):
    return json.loads(raw(oss).get_object(prefix + ".fcbuild/manifest.json").read())


def test_a_deploy_serves_the_output_with_its_headers_and_provenance(local_oss, tmp_path):
    root = tree(tmp_path, "v1", V1)
    report = run(local_oss, root, "app/", "rel-1", record={"source": {"url": "oss://src/a.tgz", "etag": "E"}})
    assert live(local_oss, "app/") == V1
    assert (report.new_assets, report.stable, report.skipped) == (1, 5, 0)
    b = raw(local_oss)
    js = b.head_object("app/assets/index-BPvgi06w.js").headers
    assert js["Cache-Control"] == IMMUTABLE and js["x-oss-meta-fcbuild-release"] == "rel-1"
    page = b.head_object("app/index.html").headers
    assert page["Cache-Control"] == REVALIDATE and page["Content-Type"] == "text/html; charset=utf-8"
    doc = manifest(local_oss, "app/")
    assert doc["release"]["id"] == "rel-1" and doc["release"]["source"] == {"url": "oss://src/a.tgz", "etag": "E"}
    assert doc["files"]["robots.txt"]["md5"] and doc["files"]["robots.txt"]["release"] == "rel-1"
    assert doc["files"].keys() == V1.keys() and doc["releases"][0]["id"] == "rel-1"
    before = dict(local_oss.server.counts)
    again = run(local_oss, root, "app/", "rel-2")
    assert (again.new_assets, again.stable, again.skipped) == (0, 0, len(V1))
    delta = {op: n - before.get(op, 0) for op, n in local_oss.server.counts.items() if n != before.get(op, 0)}
    assert delta.get("put_object", 0) <= 3  # the lease (taken, released) and the manifest: no file
    assert "head_object" not in delta and "copy_object" not in delta


def test_phase_order_new_assets_then_lease_then_plain_pages_root_index_manifest(local_oss, tmp_path):
    run(local_oss, tree(tmp_path, "v1", V1), "o/", "r1")
    local_oss.server.history.clear()
    run(local_oss, tree(tmp_path, "v2", V2), "o/", "r2")
    writes = [key for op, key in local_oss.server.history if op in ("put_object", "copy_object")]
    lease = next(i for i, k in enumerate(writes) if "/.fcbuild/lease/" in k)
    assert writes.index("o/assets/index-Cu-Bo-gk.js") < lease  # phase 1 needs no lease
    live_writes = [k for k in writes[lease:] if not k.startswith("o/.fcbuild/")]
    order = [k[2:] for k in live_writes]
    assert set(order) == {"style.css", "robots.txt", "favicon.svg", "about/index.html", "new-page.html", "index.html"}
    assert order[-1] == "index.html"
    assert max(order.index(p) for p in ("style.css", "robots.txt", "favicon.svg")) < order.index("about/index.html")
    kept = [k for k in writes if k.startswith("o/.fcbuild/releases/r1/")]
    assert {k.rsplit("r1/", 1)[1] for k in kept} == {
        "style.css",
        "robots.txt",
        "favicon.svg",
        "about/index.html",
        "index.html",
    }
    assert writes.index("o/.fcbuild/manifest.json") > writes.index("o/index.html")


def test_a_fault_at_any_request_leaves_the_live_site_whole(local_oss, tmp_path):
    """For every request index of a deploy of v2 over v1: that request fails (no retries); the live
    site is then v1 or v2, byte for byte, never a mix; and the next deploy of v2 completes."""
    v1, v2 = tree(tmp_path, "v1", V1), tree(tmp_path, "v2", V2)
    run(local_oss, v1, "probe/", "p1")
    before = sum(local_oss.server.counts.values())
    run(local_oss, v2, "probe/", "p2")
    requests = sum(local_oss.server.counts.values()) - before
    outcomes = {"v1": 0, "v2": 0}
    for i in range(requests + 2):
        prefix = f"f{i}/"
        run(local_oss, v1, prefix, f"a{i}")
        rule = local_oss.server.faults.add(FaultRule("*", f"{prefix}*", skip=i, count=1, status=500))
        try:
            run(local_oss, v2, prefix, f"b{i}", storage=client(local_oss, retries=0), ttl=2.0)
            outcome = "v2"
        except (UploadFailed, DownloadFailed):
            outcome = "v1"
        finally:
            local_oss.server.faults.clear()
        outcomes[outcome] += 1
        assert serves(local_oss, prefix, V2 if outcome == "v2" else V1), f"a fault at request {i} left a mix"
        assert rule.matched >= 1
        run(local_oss, v2, prefix, f"c{i}", ttl=2.0)
        assert serves(local_oss, prefix, V2)
    assert outcomes["v1"] >= 5 and outcomes["v2"] >= 1, outcomes


def test_the_newer_build_wins_whichever_finishes_first(local_oss, tmp_path):
    v1, v2 = tree(tmp_path, "v1", V1), tree(tmp_path, "v2", V2)
    now = time.time()
    run(local_oss, v2, "race/", "newer", started=now)
    with pytest.raises(Superseded, match="newer"):
        run(local_oss, v1, "race/", "older", started=now - 5)
    assert serves(local_oss, "race/", V2)
    assert manifest(local_oss, "race/")["release"]["id"] == "newer"


def test_racing_deploys_on_two_instances_end_with_the_newer_one(local_oss, tmp_path):
    v1, v2 = tree(tmp_path, "v1", V1), tree(tmp_path, "v2", V2)
    now = time.time()
    # the older build's lease request is slow: the newer one takes the lease first
    local_oss.server.faults.add(FaultRule("PUT", "duel/.fcbuild/lease/*", count=1, delay_s=1.5))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        older = pool.submit(run, local_oss, v1, "duel/", "older", started=now - 1)
        time.sleep(0.3)
        newer = pool.submit(run, local_oss, v2, "duel/", "newer", started=now)
        newer.result()
        with pytest.raises(Superseded):
            older.result()
    assert serves(local_oss, "duel/", V2)


def test_drift_is_repaired_by_the_next_deploy(local_oss, tmp_path):
    root = tree(tmp_path, "v1", V1)
    run(local_oss, root, "drift/", "d1")
    raw(local_oss).put_object("drift/style.css", b"tampered")
    raw(local_oss).delete_object("drift/robots.txt")
    report = run(local_oss, root, "drift/", "d2")
    assert report.repaired == 2
    assert live(local_oss, "drift/") == V1


def test_rollback_puts_back_a_kept_release_byte_for_byte(local_oss, tmp_path):
    v3 = {**V2, "index.html": V2["index.html"] + b"<!-- v3 -->", "style.css": b"body{color:green}"}
    for n, files in enumerate((V1, V2, v3), 1):
        run(local_oss, tree(tmp_path, f"v{n}", files), "rb/", f"rel-{n}")
    c = client(local_oss)
    target = deployer.Target("site", "rb/")
    listed = deployer.list_releases(c, target)
    assert [r["id"] for r in listed] == ["rel-3", "rel-2", "rel-1"] and listed[0]["live"]
    result = deployer.rollback(
        c, target, "previous", claim=deployer.Claim("rb-1", time.time()), deadline=time.monotonic() + 60, log=log
    )
    assert result["rolledBackTo"] == "rel-2"
    assert all(live(local_oss, "rb/")[k] == v for k, v in V2.items())
    deployer.rollback(
        c, target, "rel-1", claim=deployer.Claim("rb-2", time.time()), deadline=time.monotonic() + 60, log=log
    )
    site = live(local_oss, "rb/")
    assert {k: site[k] for k in V1} == V1  # later releases' new files stay until retention removes them
    assert deployer.list_releases(c, target)[0]["rollbackOf"] == "rel-1"


def test_a_superseded_build_writes_nothing_live(local_oss, tmp_path):
    run(local_oss, tree(tmp_path, "v1", V1), "sup/", "new", started=time.time())
    local_oss.server.history.clear()
    with pytest.raises(Superseded):
        run(local_oss, tree(tmp_path, "v2", V2), "sup/", "old", started=time.time() - 100)
    written = [k for op, k in local_oss.server.history if op in ("put_object", "copy_object", "delete_multiple")]
    assert not written  # it learnt from the manifest before it uploaded anything
    assert live(local_oss, "sup/") == V1


def test_a_stale_lease_is_taken_over(local_oss, tmp_path):
    c = client(local_oss)
    c.put_json("site", "stale/.fcbuild/lease/000000000000.json", {"release": "dead", "startedAt": 0, "deadline": 0})
    run(local_oss, tree(tmp_path, "v1", V1), "stale/", "alive", ttl=2.0)
    assert live(local_oss, "stale/") == V1


def test_a_site_at_the_bucket_root_never_writes_into_a_site_deployed_under_it(local_oss, tmp_path):
    """oss://site/docs/ is its own site. The root site's output has a docs/ folder: the deploy is
    refused (naming the nested site) before anything is written, and the nested site keeps its files
    and its manifest. A root output without docs/ deploys, and its retention never deletes a path in
    docs/ that an old root release once had."""
    from errors import InvalidOutput

    docs_v1 = {"index.html": b"<p>docs</p>", "guide.html": b"<p>guide</p>"}
    run(local_oss, tree(tmp_path, "root0", {**V1, "docs/old.html": b"<p>root's old page</p>"}), "", "root-0", keep=0)
    run(local_oss, tree(tmp_path, "docs", {**docs_v1, "old.html": b"<p>docs' own</p>"}), "docs/", "docs-1")
    nested_manifest = raw(local_oss).get_object("docs/.fcbuild/manifest.json").read()
    with pytest.raises(InvalidOutput, match="docs/index.html and 1 more in docs/, where another site is deployed"):
        run(local_oss, tree(tmp_path, "root1", {**V1, "docs/index.html": b"defaced", "docs/x.html": b"x"}), "", "r-1")
    assert live(local_oss, "docs/")["index.html"] == b"<p>docs</p>"
    assert manifest(local_oss, "")["release"]["id"] == "root-0"
    run(local_oss, tree(tmp_path, "root2", V2), "", "root-2", keep=0)  # retention: root-0's docs/old.html is due
    assert live(local_oss, "docs/") == {**docs_v1, "old.html": b"<p>docs' own</p>"}
    assert raw(local_oss).get_object("docs/.fcbuild/manifest.json").read() == nested_manifest
    assert serves(local_oss, "", {**V2}) is False  # the root site's listing includes the docs site
    assert all(live(local_oss, "")[k] == v for k, v in V2.items())


def test_a_rollback_asked_for_before_a_deploy_does_not_override_it(local_oss, tmp_path):
    """Newer wins for rollbacks too: a deploy that started after the rollback was asked for is live
    by the time the rollback's turn comes, so the rollback is Superseded and changes nothing; and
    "previous" means the release before the one live when the rollback was asked for."""
    for n, files in enumerate((V1, V2), 1):
        run(local_oss, tree(tmp_path, f"v{n}", files), "rbw/", f"rel-{n}")
    c = client(local_oss)
    target = deployer.Target("site", "rbw/")
    asked_at = time.time()
    previous = deployer.previous_release(c, target)  # resolved when asked: rel-1
    v3 = {**V2, "style.css": b"body{color:green}"}
    run(local_oss, tree(tmp_path, "v3", v3), "rbw/", "rel-3", started=asked_at + 0.001)
    with pytest.raises(Superseded):
        deployer.rollback(
            c, target, previous, claim=deployer.Claim("rb-late", asked_at), deadline=time.monotonic() + 60, log=log
        )
    assert live(local_oss, "rbw/")["style.css"] == b"body{color:green}"
    assert manifest(local_oss, "rbw/")["release"]["id"] == "rel-3"
    result = deployer.rollback(
        c, target, previous, claim=deployer.Claim("rb-new", time.time()), deadline=time.monotonic() + 60, log=log
    )
    assert result["rolledBackTo"] == "rel-1" and all(live(local_oss, "rbw/")[k] == v for k, v in V1.items())


def test_no_upload_starts_near_the_functions_deadline_and_the_live_site_stays(local_oss, tmp_path):
    run(local_oss, tree(tmp_path, "v1", V1), "late/", "rel-1")
    with pytest.raises(UploadFailed, match="deadline is 5s away"):
        deployer.deploy(
            client(local_oss),
            deployer.Target("site", "late/"),
            tree(tmp_path, "v2", V2),
            scan_tree(str(tmp_path / "v2")),
            claim=deployer.Claim("rel-2", time.time()),
            record={},
            cache_rules=(),
            deadline=time.monotonic() + 5.4,
            log=log,
        )
    assert serves(local_oss, "late/", V1) and manifest(local_oss, "late/")["release"]["id"] == "rel-1"
