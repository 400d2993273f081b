"""Pure deploy planning: content types, cache policy, the diff and the order."""

from __future__ import annotations

import pytest

from deploy_plan import (
    IMMUTABLE,
    REVALIDATE,
    LocalFile,
    cache_control_for,
    content_type_for,
    is_content_hashed,
    plan_deploy,
)


@pytest.mark.parametrize(
    "path,ctype",
    [
        ("a.mjs", "text/javascript; charset=utf-8"),
        ("x/y.webmanifest", "application/manifest+json"),
        ("i.avif", "image/avif"),
        ("f.woff2", "font/woff2"),
        ("m.wasm", "application/wasm"),
        ("s.map", "application/json; charset=utf-8"),
        ("INDEX.HTML", "text/html; charset=utf-8"),
        ("noext", "application/octet-stream"),
    ],
)
def test_content_types(path, ctype):
    assert content_type_for(path) == ctype


@pytest.mark.parametrize(
    "path",
    [
        "assets/index-BPvgi06w.js",
        "static/js/main.3f2a9c1b.js",
        "index-DiwrgTda.css",
        "_next/static/abc/page.js",
        "assets/index-Ab-1x_Yz.js",
        "assets/vendor-react-C_9dkP2q.js",
        "assets/Login-Cu-Bo-gk.js",
        "fonts/element-icons.732389de.ttf",
        "js/chunk-vendors.5e9c2f7a.js",
        "chunk-5Q2ZPMJN.js",
    ],
)
def test_hashed_names(path):
    assert is_content_hashed(path)


@pytest.mark.parametrize(
    "path",
    [
        "index.html",
        "jquery-ui-datepicker.js",
        "screenshot2024.png",
        "Banner2024.jpg",
        "logo192.png",
        "sw.js",
        "logo-v2-final.png",
        "photo-20240101.jpg",
        "img/My-Photo.png",
        "cafebabe.txt",
        "report-20241231.pdf",
        "dark_mode-icon.svg",
    ],
)
def test_mutable_names(path):
    assert not is_content_hashed(path)


def test_cache_rules_first_match_wins():
    rules = [("*.png", "public, max-age=60"), ("img/*", "private")]
    assert cache_control_for("img/a.png", rules) == "public, max-age=60"
    assert cache_control_for("img/a.gif", rules) == "private"
    assert cache_control_for("assets/app-a1b2c3d4.js", rules) == IMMUTABLE
    assert cache_control_for("index.html") == REVALIDATE


def test_plan_two_phases_and_the_order_of_the_switch():
    files = [
        LocalFile("index.html", 10, "a" * 32),
        LocalFile("docs/index.html", 5, "b" * 32),
        LocalFile("assets/app-a1b2c3d4.js", 100, "c" * 32),
        LocalFile("robots.txt", 1, "d" * 32),
    ]
    first = plan_deploy(files)
    assert [u.path for u in first.new_assets] == ["assets/app-a1b2c3d4.js"]  # phase 1: a new hashed name
    groups = [[u.path for u in g] for g in first.stable_groups()]
    assert groups == [["robots.txt"], ["docs/index.html"], ["index.html"]]  # the root index last of all
    assert not first.skipped
    changed = [files[0], files[1], LocalFile("assets/app-a1b2c3d4.js", 100, "e" * 32), files[3]]
    second = plan_deploy(changed, first.manifest)
    # a hashed-looking name seen with other content is not content-addressed: phase 2, revalidated
    assert [u.path for u in second.stable] == ["assets/app-a1b2c3d4.js"] and not second.new_assets
    assert second.stable[0].cache_control == REVALIDATE and not second.stable[0].hashed
    assert len(second.skipped) == 3
    # a changed cache rule re-uploads (the header is part of what is deployed)
    third = plan_deploy(files, first.manifest, [("robots.txt", "public, max-age=5")])
    assert [u.path for u in third.uploads] == ["robots.txt"]


def test_drift_is_repaired_from_the_live_listing():
    files = [LocalFile("index.html", 10, "a" * 32), LocalFile("assets/app-a1b2c3d4.js", 100, "c" * 32)]
    manifest = {p: {**e, "etag": e["md5"].upper()} for p, e in plan_deploy(files).manifest.items()}
    live = {"index.html": "A" * 32, "assets/app-a1b2c3d4.js": "C" * 32}
    assert not plan_deploy(files, manifest, live_etags=live).uploads  # as recorded: nothing to do
    edited = {**live, "index.html": '"0123456789ABCDEF0123456789ABCDEF"'}
    plan = plan_deploy(files, manifest, live_etags=edited)
    assert [u.path for u in plan.stable] == ["index.html"] and plan.repaired == ("index.html",)
    gone = {"index.html": "A" * 32}
    plan = plan_deploy(files, manifest, live_etags=gone)
    assert [u.path for u in plan.new_assets] == ["assets/app-a1b2c3d4.js"] and plan.repaired


def test_a_hashed_file_left_by_an_unfinished_deploy_is_not_sent_again():
    files = [LocalFile("assets/app-a1b2c3d4.js", 100, "c" * 32)]
    plan = plan_deploy(files, {}, live_etags={"assets/app-a1b2c3d4.js": '"' + "C" * 32 + '"'})
    assert not plan.uploads and plan.manifest["assets/app-a1b2c3d4.js"]["etag"] == "C" * 32


def test_the_output_scan_refuses_what_cannot_be_deployed(tmp_path):
    import os

    import pytest

    from deploy_plan import OutputRefused, scan_tree

    def fresh(name):
        root = tmp_path / name
        root.mkdir()
        (root / "index.html").write_text("<p>ok</p>")
        return root

    deep = fresh("meta")
    (deep / "docs" / ".fcbuild").mkdir(parents=True)
    (deep / "docs" / ".fcbuild" / "manifest.json").write_text("{}")
    with pytest.raises(OutputRefused, match="docs/.fcbuild: a .fcbuild folder"):
        scan_tree(str(deep))
    odd = fresh("bytes")
    os.close(os.open(os.path.join(os.fsencode(odd), b"caf\xe9.html"), os.O_CREAT | os.O_WRONLY, 0o644))
    with pytest.raises(OutputRefused, match="not UTF-8"):
        scan_tree(str(odd))
    tall = fresh("deep")
    os.makedirs(os.path.join(tall, *["d"] * 600))  # 1,200 bytes of path, 600 levels: no recursion, refused by length
    with pytest.raises(OutputRefused, match="a path of"):
        scan_tree(str(tall))
    many = fresh("many")
    for i in range(5):
        (many / f"f{i}.txt").write_text("x" * 100)
    assert len(scan_tree(str(many), max_files=6, max_bytes=10_000)) == 6
    with pytest.raises(OutputRefused, match="more than 5 files"):
        scan_tree(str(many), max_files=5)
    with pytest.raises(OutputRefused, match="FCBUILD_MAX_OUTPUT_MB"):
        scan_tree(str(many), max_bytes=300)
