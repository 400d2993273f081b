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


def test_plan_skips_unchanged_and_orders_entries_last():
    files = [
        LocalFile("index.html", 10, "a" * 32),
        LocalFile("docs/index.html", 5, "b" * 32),
        LocalFile("assets/app-a1b2c3d4.js", 100, "c" * 32),
        LocalFile("robots.txt", 1, "d" * 32),
    ]
    first = plan_deploy(files)
    assert [u.path for u in first.assets] == ["assets/app-a1b2c3d4.js", "robots.txt"]
    assert [u.path for u in first.entries] == ["docs/index.html", "index.html"]
    assert not first.skipped
    changed = [files[0], files[1], LocalFile("assets/app-a1b2c3d4.js", 100, "e" * 32), files[3]]
    second = plan_deploy(changed, first.manifest)
    assert [u.path for u in second.uploads] == ["assets/app-a1b2c3d4.js"]
    assert len(second.skipped) == 3
    # a changed cache rule re-uploads (the header is part of what is deployed)
    third = plan_deploy(files, first.manifest, [("robots.txt", "public, max-age=5")])
    assert [u.path for u in third.uploads] == ["robots.txt"]
