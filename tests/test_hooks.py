"""Webhook verification, parsing and planning (pure), on the recorded provider bodies."""

from __future__ import annotations

import json
import time

import pytest

import hooks
from tests import hook_payloads as hp

URL = "https://github.com/acme/web.git"
SECRET = "hook-secret-1a2b3c"
REPO = hooks.parse_repos(
    json.dumps(
        [
            {
                "url": URL,
                "target": "oss://site/",
                "previews": {"target": "oss://previews/{slug}/", "url": "https://preview.example.com/{slug}/"},
            }
        ]
    )
)[0]


def test_a_github_signature_is_checked_against_the_raw_body():
    body = hp.body("github-push", clone_url=URL)
    headers = hp.github("push", body, SECRET)
    hooks.verify("github", headers, body, SECRET)
    for bad_body, bad_headers in (
        (body + b" ", headers),  # altered on the way
        (body, hp.github("push", body, "another-secret")),
        (body, {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}),
    ):
        with pytest.raises(hooks.HookRefused) as refused:
            hooks.verify("github", bad_headers, bad_body, SECRET)
        assert refused.value.status == 401
    with pytest.raises(hooks.HookRefused) as off:
        hooks.verify("github", headers, body, "")
    assert off.value.status == 403 and "FCBUILD_GITHUB_SECRET" in str(off.value)


def test_gitlab_and_codeup_compare_their_token_headers():
    hooks.verify("gitlab", hp.gitlab("Push Hook", SECRET), b"{}", SECRET)
    hooks.verify("codeup", hp.codeup("Push Hook", SECRET), b"{}", SECRET)
    for provider, headers in (("gitlab", hp.gitlab("Push Hook", "nope")), ("codeup", hp.codeup("Push Hook", "nope"))):
        with pytest.raises(hooks.HookRefused):
            hooks.verify(provider, headers, b"{}", SECRET)
    with pytest.raises(hooks.HookRefused):  # GitLab's header is not Codeup's
        hooks.verify("codeup", hp.gitlab("Push Hook", SECRET), b"{}", SECRET)


def test_gitee_signatures_have_a_window_and_passwords_work_too():
    now = time.time()
    hooks.verify("gitee", hp.gitee_signed("Push Hook", SECRET, int(now * 1000)), b"{}", SECRET, now=now)
    old = hp.gitee_signed("Push Hook", SECRET, int((now - hooks.GITEE_WINDOW_S - 5) * 1000))
    with pytest.raises(hooks.HookRefused) as replayed:
        hooks.verify("gitee", old, b"{}", SECRET, now=now)
    assert "replayed" in str(replayed.value)
    with pytest.raises(hooks.HookRefused):
        hooks.verify("gitee", hp.gitee_signed("Push Hook", "other", int(now * 1000)), b"{}", SECRET, now=now)
    hooks.verify("gitee", {"X-Gitee-Token": SECRET, "X-Gitee-Event": "Push Hook"}, b"{}", SECRET, now=now)
    # The URL-encoded form Gitee's documentation shows is the same signature.
    signed = hp.gitee_signed("Push Hook", SECRET, int(now * 1000))
    encoded = {
        **signed,
        "X-Gitee-Token": signed["X-Gitee-Token"].replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"),
    }
    hooks.verify("gitee", encoded, b"{}", SECRET, now=now)


def test_deliveries_are_parsed_from_the_recorded_bodies():
    push = hooks.parse("github", {"X-GitHub-Event": "push"}, hp.body("github-push", clone_url=URL, sha="a" * 40))
    assert (push.kind, push.branch, push.sha, push.repo_url) == ("push", "main", "a" * 40, URL)
    deleted = hooks.parse(
        "github", {"X-GitHub-Event": "push"}, hp.body("github-push", clone_url=URL, sha=hooks.ZERO_SHA, branch="feat/x")
    )
    assert (deleted.kind, deleted.branch) == ("delete", "feat/x")
    pr = hooks.parse(
        "github",
        {"X-GitHub-Event": "pull_request"},
        hp.body("github-pull_request", clone_url=URL, number=12, branch="feat/x", action="synchronize", sha="b" * 40),
    )
    assert (pr.kind, pr.number, pr.action, pr.branch, pr.sha, pr.fork) == (
        "pull_request",
        12,
        "update",
        "feat/x",
        "b" * 40,
        False,
    )
    fork = hooks.parse(
        "github",
        {"X-GitHub-Event": "pull_request"},
        hp.body("github-pull_request", clone_url=URL, head_clone_url="https://github.com/eve/web.git"),
    )
    assert fork.fork
    merged = hooks.parse(
        "gitlab",
        {"X-Gitlab-Event": "Merge Request Hook"},
        hp.body("gitlab-merge_request", clone_url=URL, number=3, action="merge", state="merged"),
    )
    assert (merged.kind, merged.number, merged.action) == ("pull_request", 3, "close")
    retitled = hooks.parse(
        "gitlab",
        {"X-Gitlab-Event": "Merge Request Hook"},
        hp.body("gitlab-merge_request", clone_url=URL, action="update"),
    )
    assert retitled.action == "other:edited"  # no oldrev: no new commits
    gitee = hooks.parse(
        "gitee",
        {"X-Gitee-Event": "Merge Request Hook"},
        hp.body("gitee-merge_request", clone_url=URL, number=7, action="open", branch="dev"),
    )
    assert (gitee.kind, gitee.number, gitee.action, gitee.branch) == ("pull_request", 7, "open", "dev")
    codeup = hooks.parse(
        "codeup", {"X-Codeup-Event": "Push Hook"}, hp.body("codeup-push", clone_url=URL, branch="main")
    )
    assert (codeup.kind, codeup.branch, codeup.repo_url) == ("push", "main", URL)
    ping = hooks.parse("github", {"X-GitHub-Event": "ping"}, hp.body("github-ping", clone_url=URL))
    assert ping.kind == "ping"
    for provider, headers, data in (
        ("github", {"X-GitHub-Event": "star"}, b"{}"),
        ("github", {"X-GitHub-Event": "push"}, b"not json"),
        ("github", {"X-GitHub-Event": "push"}, b'{"ref": "refs/heads/main"}'),
        ("gitlab", {"X-Gitlab-Event": "Issue Hook"}, b'{"object_kind": "issue"}'),
    ):
        with pytest.raises(hooks.HookRefused) as refused:
            hooks.parse(provider, headers, data)
        assert refused.value.status == 400


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("main", "main"),
        ("Feature/Login_Page", "feature-login-page"),
        ("--x--", "x"),
    ],
)
def test_branch_slugs_are_dns_labels(branch, expected):
    assert hooks.slug(branch) == expected


def test_long_odd_and_pr_like_branch_slugs_get_a_hash():
    long = hooks.slug("feature/" + "x" * 100)
    assert len(long) <= 63 and long.startswith("feature-xxx") and long != hooks.slug("feature/" + "x" * 101)
    assert hooks.slug("pr-12") != "pr-12" and hooks.slug("pr-12").startswith("pr-12-")
    assert hooks.slug("中文") and len(hooks.slug("中文")) <= 63
    for name in ("Feature/Login_Page", "feature/" + "x" * 100, "pr-12", "中文", "a"):
        slug = hooks.slug(name)
        assert hooks.Previews("oss://p/{slug}/", "https://x/{slug}/").slug_of(f"oss://p/{slug}/") == slug


def test_plans_for_production_previews_and_removals():
    push = hooks.plan(REPO, hooks.Event("push", URL, "main", sha="a" * 40))
    assert (push.action, push.environment, push.target) == ("build", "production", "oss://site/")
    pr = hooks.plan(REPO, hooks.Event("pull_request", URL, "feat", sha="b" * 40, number=1, action="open"))
    assert (pr.action, pr.slug, pr.target, pr.url, pr.base_path) == (
        "build",
        "pr-1",
        "oss://previews/pr-1/",
        "https://preview.example.com/pr-1/",
        "/pr-1/",
    )
    request = hooks.build_request(REPO, pr)
    assert request["target"] == "oss://previews/pr-1/" and request["build"]["environment"] == "preview"
    assert request["build"]["base_path"] == "/pr-1/" and request["report"] == {
        "repo": "acme/web",
        "sha": "b" * 40,
        "pr": 1,
        "url": "https://preview.example.com/pr-1/",
    }
    assert "token" not in json.dumps(request)
    closed = hooks.plan(REPO, hooks.Event("pull_request", URL, "feat", number=1, action="close"))
    assert (closed.action, closed.target) == ("remove", "oss://previews/pr-1/")
    branch = hooks.plan(REPO, hooks.Event("push", URL, "Feat/X", sha="c" * 40))
    assert (branch.target, branch.environment) == ("oss://previews/feat-x/", "preview")
    gone = hooks.plan(REPO, hooks.Event("delete", URL, "Feat/X"))
    assert (gone.action, gone.target) == ("remove", "oss://previews/feat-x/")
    assert hooks.plan(REPO, hooks.Event("delete", URL, "main")).action == "ignore"
    assert hooks.plan(REPO, hooks.Event("push", URL, tag="v1")).action == "ignore"
    forked = hooks.plan(REPO, hooks.Event("pull_request", URL, "x", number=2, action="open", fork=True))
    assert forked.action == "ignore" and "fork" in forked.reason


def test_only_a_configured_previews_folder_is_a_removable_target():
    previews = REPO.previews
    assert previews.slug_of("oss://previews/pr-1/") == "pr-1"
    for other in (
        "oss://previews/",
        "oss://previews/pr-1/x/",
        "oss://site/",
        "oss://previews/-bad/",
        "oss://previews2/pr-1/",
    ):
        assert previews.slug_of(other) is None, other


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"target": "oss://site/"}, "url"),
        ({"url": "ssh://git@github.com/acme/web.git", "target": "oss://site/"}, "http(s) clone URL"),
        ({"url": "https://git.example.com/a/b.git", "target": "oss://site/"}, "provider"),
        (
            {
                "url": URL,
                "target": "oss://site/",
                "previews": {"target": "oss://site/pr/{slug}/", "url": "https://x/{slug}/"},
            },
            "inside the production site",
        ),
        (
            {"url": URL, "target": "oss://p/x/", "previews": {"target": "oss://p/{slug}/", "url": "https://x/{slug}/"}},
            "must not be one of the previews",
        ),
        (
            {
                "url": URL,
                "target": "oss://site/",
                "previews": {"target": "oss://p/pr-{slug}/", "url": "https://x/{slug}/"},
            },
            "whole folder",
        ),
        ({"url": URL, "target": "oss://site/", "colour": "red"}, "unknown field"),
    ],
)
def test_bad_repository_settings_are_refused_with_the_field(entry, message):
    with pytest.raises(ValueError) as refused:
        hooks.parse_repos(json.dumps([entry]))
    assert message in str(refused.value)


def test_the_same_delivery_has_the_same_replay_key():
    body = hp.body("github-push", clone_url=URL)
    a = hp.github("push", body, SECRET, delivery="d-1")
    assert hooks.replay_key("github", a, body) == hooks.replay_key(
        "github", hp.github("push", body, SECRET, delivery="d-1"), body
    )
    assert hooks.replay_key("github", a, body) != hooks.replay_key(
        "github", hp.github("push", body, SECRET, delivery="d-2"), body
    )
    signed = hp.gitee_signed("Push Hook", SECRET)
    assert hooks.replay_key("gitee", signed, b"{}") == hooks.replay_key("gitee", signed, b'{"other": "body"}')


def test_codeup_statuses_name_the_organization_from_the_clone_url_on_the_central_edition():
    import commit_status

    org = "60d54f3daccf2bbd6659f3ad"
    entry = {"provider": "codeup", "url": f"https://codeup.aliyun.com/{org}/web.git", "target": "oss://site/"}
    [central] = hooks.parse_repos(json.dumps([entry]))
    assert central.codeup_organization() == org and central.id == f"{org}/web"
    [region] = hooks.parse_repos(json.dumps([{**entry, "api": "https://codeup.acme.example/"}]))
    assert region.codeup_organization() == ""  # a region edition's paths name no organization
    [named] = hooks.parse_repos(json.dumps([{**entry, "organization": "other-org", "project_id": "2813489"}]))
    assert named.codeup_organization() == "other-org"
    sha = "6da8c14b5a9102998148b7ea35f96507d5304f74"
    report = commit_status.Report("codeup", hooks.DEFAULT_APIS["codeup"], "pt-x", central.id, "", sha, 0, org)
    method, url, body, headers = commit_status.request_for(report, "failure", "", "build failed\nsecond line")
    assert method == "POST" and headers["x-yunxiao-token"] == "pt-x"
    assert url == (
        f"https://openapi-rdc.aliyuncs.com/oapi/v1/codeup/organizations/{org}/repositories/{org}%2Fweb"
        f"/commits/{sha}/statuses"
    )
    assert json.loads(body) == {"context": "fcbuild", "state": "failure", "description": "build failed"}
    report = commit_status.Report("codeup", "https://codeup.acme.example", "pt-x", region.id, "2813489", sha)
    _, url, _, _ = commit_status.request_for(report, "success", "https://www.acme.example/", "")
    assert url == f"https://codeup.acme.example/oapi/v1/codeup/repositories/2813489/commits/{sha}/statuses"
