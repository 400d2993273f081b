"""Push to deploy through the real fcbuild process: provider deliveries (recorded bodies, signed as
each provider signs) on the HTTP trigger's path, the build queued through a strict local stand-in
for FC's InvokeFunction API (it checks the ACS3 signature, then calls /invoke as FC does), the
commits served by `git http-backend`, the statuses received by strict stand-ins of the providers'
APIs, and the preview opened in headless Chromium at its URL."""

from __future__ import annotations

import json
import os
import shutil
import time

import oss2
import pytest

import localfc
from localoss import LocalOss
from localoss.website import Website
from tests import hook_payloads as hp
from tests.browser import CHROMIUM, open_page
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import start_runtime
from tests.status_standin import StatusApi
from tests.test_e2e_build import TINY
from tests.test_e2e_git import LOCAL_GIT, TOKEN, GitServer, git

SITE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo", "site")
GITHUB_SECRET = "gh-hook-secret-9f8e7d"
GITLAB_TOKEN = "gl-hook-token-6c5b4a"
GITEE_SECRET = "gitee-sign-secret-3a2b1c"
CODEUP_TOKEN = "codeup-hook-token-0f1e2d"
STATUS_TOKENS = {
    "github": "gh-status-token-11aa",
    "gitlab": "gl-status-token-22bb",
    "gitee": "gitee-status-token-33cc",
    "codeup": "pt-codeup-status-token-44dd",
}
CODEUP_ORG = "60d54f3daccf2bbd6659f3ad"
DEPLOY_HOOK_ID = "cms-hook-5b1f0c9e7d3a2f4b"
FC_ACCOUNT = {"FC_FUNCTION_NAME": "fcbuild-test", "FC_REGION": REGION, "FC_ACCOUNT_ID": "1234567890"}
TRIGGER = {"x-fc-control-path": "/http-invoke"}  # how FC marks a request through the HTTP trigger
ENV = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git sources need git on the instance")


def commit(work, message: str, edit: tuple[str, str, str] | None = None) -> str:
    if edit is not None:
        path, old, new = edit
        full = os.path.join(work, path)
        with open(full, encoding="utf-8") as f:
            text = f.read()
        assert old in text
        with open(full, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new))
    git(*ENV, "add", ".", cwd=work)
    git(*ENV, "commit", "-q", "--allow-empty", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


class World:
    """Everything the deliveries travel through, made once for the module."""

    def __init__(self, base) -> None:
        self.base = base
        self.oss = LocalOss(
            str(base / "oss"),
            buckets=["site", "previews"],
            accounts=[AK, STS],
            region=REGION,
            website=Website.parse("previews/"),
        ).__enter__()
        self.work = base / "work"
        shutil.copytree(SITE, self.work, ignore=shutil.ignore_patterns("node_modules", "dist"))
        git("init", "-q", "-b", "main", cwd=self.work)
        self.main_sha = commit(self.work, "site")
        git("checkout", "-q", "-b", "feat", cwd=self.work)
        self.feat_sha = commit(self.work, "preview one", ("src/main.js", "Hello from Function Compute", "Preview one"))
        git("checkout", "-q", "main", cwd=self.work)
        git("checkout", "-q", "-b", "feat-12", cwd=self.work)
        self.feat12_sha = commit(
            self.work, "preview twelve", ("src/main.js", "Hello from Function Compute", "Preview twelve")
        )
        git("checkout", "-q", "main", cwd=self.work)
        tiny = base / "tiny"
        shutil.copytree(TINY, tiny)
        git("init", "-q", "-b", "main", cwd=tiny)
        self.tiny_sha = commit(tiny, "tiny")
        git("checkout", "-q", "-b", "dev", cwd=tiny)
        self.tiny_dev_sha = commit(tiny, "dev", None)
        git("clone", "-q", "--bare", str(self.work), str(base / "repos" / "web.git"), cwd=base)
        git("clone", "-q", "--bare", str(tiny), str(base / "repos" / "tiny.git"), cwd=base)
        self.git = GitServer(str(base / "repos"))
        self.web_url, self.tiny_url = self.git.url("web.git"), self.git.url("tiny.git")
        self.apis = {p: StatusApi(p, t) for p, t in STATUS_TOKENS.items()}
        self.fc = localfc.serve(
            address=("127.0.0.1", 0),
            access_key_id=STS.access_key_id,
            access_key_secret=STS.access_key_secret,
            security_token=STS.security_token,
            runtime="",
            account_id=FC_ACCOUNT["FC_ACCOUNT_ID"],
            region=REGION,
            functions=(FC_ACCOUNT["FC_FUNCTION_NAME"],),
        )
        self.preview_url = self.oss.endpoint + "/{slug}/"
        repos = [
            {
                "url": self.web_url,
                "provider": "github",
                "id": "acme/web",
                "target": "oss://site/web/",
                "previews": {"target": "oss://previews/{slug}/", "url": self.preview_url},
                "api": self.apis["github"].url,
                "env": {"preview": {"VITE_BUILD_LABEL": "a-preview-build"}},
                "deploy_hooks": [{"id_env": "FCBUILD_HOOK_CMS", "branch": "main"}],
            },
            {
                "url": self.tiny_url,
                "provider": "gitlab",
                "id": "acme/tiny",
                "target": "oss://site/tiny-gl/",
                "previews": {"target": "oss://previews/gl/{slug}/", "url": "https://gl.example.com/{slug}/"},
                "api": self.apis["gitlab"].url,
            },
            {
                "url": self.tiny_url,
                "provider": "gitee",
                "id": "acme/tiny-gitee",
                "target": "oss://site/tiny-gitee/",
                "previews": {
                    "target": "oss://previews/gitee/{slug}/",
                    "url": "https://gitee-preview.example.com/{slug}/",
                },
                "api": self.apis["gitee"].url,
            },
            {
                "url": self.tiny_url,
                "provider": "codeup",
                "id": "acme/tiny-codeup",
                "target": "oss://site/tiny-codeup/",
                "api": self.apis["codeup"].url,
                "organization": CODEUP_ORG,
            },
        ]
        self.rt = start_runtime(
            {
                **LOCAL_GIT,
                **FC_ACCOUNT,
                "FCBUILD_OSS_ENDPOINT": self.oss.endpoint,
                "FCBUILD_GIT_TOKEN": TOKEN,
                "FCBUILD_FC_ENDPOINT": f"http://127.0.0.1:{self.fc.server_address[1]}",
                "FCBUILD_REPOS": json.dumps(repos),
                "FCBUILD_GITHUB_SECRET": GITHUB_SECRET,
                "FCBUILD_GITLAB_TOKEN": GITLAB_TOKEN,
                "FCBUILD_GITEE_SECRET": GITEE_SECRET,
                "FCBUILD_CODEUP_TOKEN": CODEUP_TOKEN,
                "FCBUILD_HOOK_CMS": DEPLOY_HOOK_ID,
                "FCBUILD_HOOK_MAX_KB": "1024",
                **{f"FCBUILD_{p.upper()}_STATUS_TOKEN": t for p, t in STATUS_TOKENS.items()},
                "ALIBABA_CLOUD_ACCESS_KEY_ID": STS.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STS.access_key_secret,
                "ALIBABA_CLOUD_SECURITY_TOKEN": STS.security_token,
            }
        )
        self.fc.runtime = f"127.0.0.1:{self.rt.port}"

    def bucket(self, name: str) -> oss2.Bucket:
        return oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), self.oss.endpoint, name, region=REGION)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        return sorted(o.key for o in oss2.ObjectIterator(self.bucket(bucket), prefix=prefix))

    def deliver(self, path: str, body: bytes, headers: dict[str, str], *, trigger: bool = True):
        return self.rt.request("POST", path, body, {**(TRIGGER if trigger else {}), **headers}, fresh=True)

    def invocations(self) -> list[dict]:
        return list(self.fc.invocations)

    def finished(self, request_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.invocations():
                if record["requestId"] == request_id and record["state"] != "Running":
                    return record
            time.sleep(0.01)
        raise AssertionError(f"invocation {request_id} did not end")

    def queued(self, resp) -> dict:
        assert resp.status == 202, resp.body
        ids = resp.json()["requestIds"]
        assert len(ids) == 1 and ids[0]
        record = self.finished(ids[0])
        assert record["state"] == "Succeeded", record
        return record["result"]

    def close(self) -> None:
        self.rt.kill()
        self.fc.shutdown()
        self.git.shutdown()
        for api in self.apis.values():
            api.shutdown()
        self.oss.__exit__(None, None, None)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("hooks"))
    yield w
    w.close()


def github_pr(w: World, number: int, action: str, branch: str, sha: str, **extra) -> tuple[bytes, dict]:
    body = hp.body(
        "github-pull_request", clone_url=w.web_url, number=number, action=action, branch=branch, sha=sha, **extra
    )
    return body, hp.github("pull_request", body, GITHUB_SECRET)


def test_a_push_to_production_deploys_it_and_the_commit_hears_pending_then_success(world):
    body = hp.body("github-push", clone_url=world.web_url, sha=world.main_sha)
    resp = world.deliver("/hooks/github", body, hp.github("push", body, GITHUB_SECRET))
    result = world.queued(resp)
    assert resp.json()["environment"] == "production" and resp.json()["target"] == "oss://site/web/"
    assert result["target"] == "oss://site/web/" and result["commit"] == world.main_sha
    index = world.bucket("site").get_object("web/index.html").read().decode()
    assert "Built by fcbuild" in index
    states = [(c["sha"], c["state"]) for c in world.apis["github"].calls]
    assert states[-2:] == [(world.main_sha, "pending"), (world.main_sha, "success")]
    assert world.apis["github"].calls[-1]["context"] == "fcbuild" and not world.apis["github"].refused


def test_a_pull_request_gets_a_preview_that_works_at_its_url_and_goes_when_closed(world, tmp_path):
    for number, branch, sha in ((1, "feat", world.feat_sha), (12, "feat-12", world.feat12_sha)):
        body, headers = github_pr(world, number, "opened", branch, sha)
        resp = world.deliver("/hooks/github", body, headers)
        result = world.queued(resp)
        assert result["target"] == f"oss://previews/pr-{number}/"
        assert result["url"] == world.preview_url.replace("{slug}", f"pr-{number}")
    last = world.apis["github"].calls[-1]
    assert (last["sha"], last["state"], last["target_url"]) == (
        world.feat12_sha,
        "success",
        world.oss.endpoint + "/pr-12/",
    )
    # The page at its URL, as a browser loads it: its script ran, every asset loaded from under /pr-1/.
    assert CHROMIUM, "the preview is checked in headless Chromium: apt-get install chromium"
    page = open_page(world.oss.endpoint + "/pr-1/", str(tmp_path / "pr-1.png"))
    assert "Preview one" in page.text and "a-preview-build" in page.text, page.text
    assert not [f for f in page.failed if "favicon.ico" not in f], page.failed
    assert not page.console_errors, page.console_errors
    assert any("/pr-1/assets/" in u and u.endswith(".js") for u in page.loaded), page.loaded
    assert os.path.getsize(tmp_path / "pr-1.png") > 1000
    index = world.bucket("previews").get_object("pr-1/index.html").read().decode()
    assert '"/pr-1/assets/' in index  # built with the preview's base path (Vite --base)
    # An update rebuilds the preview with the new commit.
    git("checkout", "-q", "feat", cwd=world.work)
    newer = commit(world.work, "preview one, again", ("src/main.js", "Preview one", "Preview one, updated"))
    git("checkout", "-q", "main", cwd=world.work)
    git("push", "-q", str(world.base / "repos" / "web.git"), "feat", cwd=world.work)
    body, headers = github_pr(world, 1, "synchronize", "feat", newer)
    assert world.queued(world.deliver("/hooks/github", body, headers))["commit"] == newer
    script = [k for k in world.keys("previews", "pr-1/assets/") if k.endswith(".js")]
    assert any(b"Preview one, updated" in world.bucket("previews").get_object(k).read() for k in script)
    # Closing pr-1 removes everything under pr-1/ and nothing of pr-12/.
    twelve = world.keys("previews", "pr-12/")
    body, headers = github_pr(world, 1, "closed", "feat", newer, state="closed")
    removal = world.queued(world.deliver("/hooks/github", body, headers))
    assert removal["target"] == "oss://previews/pr-1/" and removal["removed"] > 5
    assert world.keys("previews", "pr-1/") == []
    assert world.keys("previews", "pr-12/") == twelve and "pr-12/.fcbuild/manifest.json" in twelve
    assert world.bucket("site").object_exists("web/index.html")  # production untouched


def test_the_same_delivery_twice_builds_once(world):
    body = hp.body("github-push", clone_url=world.web_url, sha=world.main_sha)
    headers = hp.github("push", body, GITHUB_SECRET, delivery="delivery-twice-1")
    first = world.deliver("/hooks/github", body, headers)
    assert first.status == 202, first.body
    before = len(world.invocations())
    again = world.deliver("/hooks/github", body, headers)
    assert again.status == 200 and again.json()["duplicate"] is True
    assert again.json()["requestIds"] == first.json()["requestIds"]
    assert len(world.invocations()) == before
    world.finished(first.json()["requestIds"][0])


def test_refused_deliveries_start_nothing(world):
    before = len(world.invocations())
    body = hp.body("github-push", clone_url=world.web_url, sha=world.main_sha)
    unknown_repo = hp.body("github-push", clone_url="https://github.com/acme/other.git", sha=world.main_sha)
    stale = hp.gitee_signed("Push Hook", GITEE_SECRET, int((time.time() - 3600) * 1000))
    cases = [
        ("/hooks/github", body, hp.github("push", body, "not-the-secret"), 401),
        ("/hooks/github", body, {"X-GitHub-Event": "push", "Content-Type": "application/json"}, 401),
        ("/hooks/github", unknown_repo, hp.github("push", unknown_repo, GITHUB_SECRET), 404),
        ("/hooks/github", b"{}", hp.github("issues", b"{}", GITHUB_SECRET), 400),
        ("/hooks/gitee", hp.body("gitee-merge_request", clone_url=world.tiny_url), stale, 401),
        ("/hooks/gitlab", b"{}", hp.gitlab("Push Hook", "wrong-token"), 401),
        ("/hooks/bitbucket", body, {}, 404),
        ("/hooks/build/not-a-hook-id-at-all-000", b"", {}, 404),
    ]
    for path, data, headers, status in cases:
        resp = world.deliver(path, data, headers)
        assert resp.status == status, (path, resp.status, resp.body)
        assert resp.json()["message"], resp.body
    big = b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    resp = world.deliver("/hooks/github", big, hp.github("push", big, GITHUB_SECRET))
    assert resp.status == 413, resp.body
    # Through the HTTP trigger, a build request, a rollback and the lifecycle paths are refused.
    for method, path in (("POST", "/invoke"), ("POST", "/initialize"), ("GET", "/pre-stop")):
        event = json.dumps({"rollback": {"target": "oss://site/web/"}}).encode() if path == "/invoke" else b""
        resp = world.rt.request(method, path, event, TRIGGER, fresh=True)
        assert resp.status == 403, (path, resp.body)
    time.sleep(0.5)
    assert len(world.invocations()) == before
    assert world.rt.request("GET", "/health").json()["status"] == "ok"


def test_gitlab_gitee_and_codeup_deliveries_build_and_report_their_way(world):
    # GitLab: a merge request opened, with the token header; its status API hears running, then success.
    body = hp.body(
        "gitlab-merge_request", clone_url=world.tiny_url, number=4, action="open", branch="dev", sha=world.tiny_dev_sha
    )
    result = world.queued(world.deliver("/hooks/gitlab", body, hp.gitlab("Merge Request Hook", GITLAB_TOKEN)))
    assert result["target"] == "oss://previews/gl/pr-4/"
    assert [(c["project"], c["state"]) for c in world.apis["gitlab"].calls] == [
        ("acme/tiny", "running"),
        ("acme/tiny", "success"),
    ]
    assert world.apis["gitlab"].calls[-1]["target_url"] == "https://gl.example.com/pr-4/"
    # Gitee: a signed merge request; no status API, so the outcome is a comment on the pull request.
    body = hp.body(
        "gitee-merge_request", clone_url=world.tiny_url, number=7, action="open", branch="dev", sha=world.tiny_dev_sha
    )
    result = world.queued(world.deliver("/hooks/gitee", body, hp.gitee_signed("Merge Request Hook", GITEE_SECRET)))
    assert result["target"] == "oss://previews/gitee/pr-7/"
    [comment] = world.apis["gitee"].calls
    assert comment["pr"] == 7 and "https://gitee-preview.example.com/pr-7/" in comment["body"]
    # Codeup: a push to production with its token header; CreateCommitStatus hears pending, then success.
    body = hp.body("codeup-push", clone_url=world.tiny_url, branch="main", sha=world.tiny_sha)
    result = world.queued(world.deliver("/hooks/codeup", body, hp.codeup("Push Hook", CODEUP_TOKEN)))
    assert result["target"] == "oss://site/tiny-codeup/" and result["commit"] == world.tiny_sha
    calls = world.apis["codeup"].calls
    assert [(c["organization"], c["repository"], c["sha"], c["state"]) for c in calls] == [
        (CODEUP_ORG, "acme/tiny-codeup", world.tiny_sha, "pending"),
        (CODEUP_ORG, "acme/tiny-codeup", world.tiny_sha, "success"),
    ]
    assert calls[-1]["context"] == "fcbuild" and not world.apis["codeup"].refused
    # A ping is answered, builds nothing.
    ping = hp.body("github-ping", clone_url=world.web_url)
    before = len(world.invocations())
    resp = world.deliver("/hooks/github", ping, hp.github("ping", ping, GITHUB_SECRET))
    assert resp.status == 200 and resp.json()["message"] == "pong"
    assert len(world.invocations()) == before


def test_a_deploy_hook_builds_its_branch(world):
    resp = world.deliver(f"/hooks/build/{DEPLOY_HOOK_ID}", b"", {})
    result = world.queued(resp)
    assert result["target"] == "oss://site/web/" and result["commit"] == world.main_sha
    assert DEPLOY_HOOK_ID not in world.rt.output()


def test_a_removal_names_only_a_configured_preview_folder(world):
    for target in ("oss://site/web/", "oss://previews/", "oss://previews/pr-12/x/"):
        resp = world.rt.invoke({"remove": {"target": target}})
        assert resp.status == 404 and resp.json()["errorType"] == "AccessDenied", resp.body
    assert world.bucket("site").object_exists("web/index.html")


def test_prune_removes_previews_not_deployed_for_n_days(world):
    assert world.keys("previews", "pr-12/")
    resp = world.rt.invoke({"prune": {"older_than_days": 1}})
    assert resp.status == 200 and resp.json()["kept"] >= 1 and world.keys("previews", "pr-12/"), resp.body
    resp = world.rt.invoke({"prune": {"older_than_days": 0.00001}})  # ~1 s
    assert resp.status == 200, resp.body
    removed = {r["target"] for r in resp.json()["removed"]}
    assert "oss://previews/pr-12/" in removed and world.keys("previews", "pr-12/") == []
    assert world.bucket("site").object_exists("web/index.html")


def test_no_secret_or_token_reaches_the_log(world):
    out = world.rt.output()
    for secret in (
        GITHUB_SECRET,
        GITLAB_TOKEN,
        GITEE_SECRET,
        CODEUP_TOKEN,
        DEPLOY_HOOK_ID,
        TOKEN,
        *STATUS_TOKENS.values(),
    ):
        assert secret not in out
    for record in world.invocations():
        body = record["body"]
        assert all(s not in body for s in (TOKEN, *STATUS_TOKENS.values(), GITHUB_SECRET))
