"""Git sources through the real fcbuild process, against a real git smart-HTTP server: `git
http-backend` behind a small HTTP server that asks for basic auth."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import oss2
import pytest

from localoss import LocalOss
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import function_error, start_runtime
from tests.test_e2e_build import CREDS, TINY

TOKEN = "git-token-5e6f7a8b"
# The git servers here listen on this host: allowed explicitly, and the function's token may go to them.
LOCAL_GIT = {"FCBUILD_ALLOW_PRIVATE_NETS": "127.0.0.0/8", "FCBUILD_GIT_HOSTS": "127.0.0.1"}
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git sources need git on the instance")


class GitServer(ThreadingHTTPServer):
    """`redirect`: answer every request with a redirect to that server instead."""

    daemon_threads = True

    def __init__(self, root: str, host: str = "127.0.0.1", redirect: GitServer | None = None) -> None:
        super().__init__((host, 0), GitHandler)
        self.root, self.host, self.redirect = root, host, redirect
        self.requests: list[str] = []
        self.authorizations: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, repo: str) -> str:
        return f"http://{self.host}:{self.server_address[1]}/{repo}"


class GitHandler(BaseHTTPRequestHandler):
    server: GitServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        self.server.requests.append(self.path)
        self.server.authorizations.append(self.headers.get("Authorization", ""))
        if self.server.redirect is not None:
            self.send_response(301)
            self.send_header("Location", self.server.redirect.url(self.path.lstrip("/")))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "GIT_PROJECT_ROOT": self.server.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "PATH": os.environ["PATH"],
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A bare repository: main (two commits), a tag on the first, a branch `next`."""
    base = tmp_path_factory.mktemp("git")
    work = base / "work"
    shutil.copytree(TINY, work)
    env_args = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    git("init", "-q", "-b", "main", cwd=work)
    git(*env_args, "add", ".", cwd=work)
    git(*env_args, "commit", "-q", "-m", "first", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    git("tag", "v1", cwd=work)
    (work / "CHANGELOG.md").write_text("second\n")
    git(*env_args, "add", ".", cwd=work)
    git(*env_args, "commit", "-q", "-m", "second", cwd=work)
    git("branch", "next", cwd=work)
    git("clone", "-q", "--bare", str(work), str(base / "site.git"), cwd=base)
    server = GitServer(str(base))
    yield server, first, git("rev-parse", "HEAD", cwd=work)
    server.shutdown()


@pytest.fixture(scope="module")
def oss(tmp_path_factory):
    with LocalOss(str(tmp_path_factory.mktemp("oss")), buckets=["site"], accounts=[AK, STS], region=REGION) as s:
        yield s


@pytest.fixture(scope="module")
def runtime(oss):
    rt = start_runtime({**LOCAL_GIT, "FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_GIT_TOKEN": TOKEN})
    yield rt
    rt.kill()


def test_a_branch_a_tag_and_a_commit_build_and_the_commit_is_recorded(oss, runtime, repo):
    server, first, second = repo
    for ref, commit in (("main", second), ("v1", first), (first, first)):
        event = {"source": {"git": server.url("site.git"), "ref": ref}, "target": "oss://site/git/"}
        resp = runtime.invoke(event, headers=CREDS, timeout=300)
        assert resp.status == 200, resp.body
        manifest = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "site", region=REGION)
        import json

        release = json.loads(manifest.get_object("git/.fcbuild/manifest.json").read())["release"]
        assert release["source"] == {"url": server.url("site.git"), "ref": ref, "commit": commit}
    out = runtime.output()
    assert TOKEN not in out and base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode() not in out


def test_a_token_in_the_request_a_bad_token_and_a_missing_ref(oss, repo, tmp_path):
    server, _, _ = repo
    rt = start_runtime({**LOCAL_GIT, "FCBUILD_OSS_ENDPOINT": oss.endpoint})
    try:
        good = {"source": {"git": server.url("site.git"), "ref": "next", "token": TOKEN}, "target": "oss://site/git2/"}
        assert rt.invoke(good, headers=CREDS, timeout=300).status == 200
        bad = {**good, "source": {**good["source"], "token": "not-the-token"}}
        message = function_error(rt.invoke(bad, headers=CREDS), "InvalidSource")["errorMessage"]
        assert "refused" in message and "not-the-token" not in message
        missing = {**good, "source": {**good["source"], "ref": "no-such-branch"}}
        assert (
            "no ref 'no-such-branch'"
            in function_error(rt.invoke(missing, headers=CREDS), "SourceNotFound")["errorMessage"]
        )
        assert "not-the-token" not in rt.output() and TOKEN not in rt.output()
        with_creds = {**good, "source": {"git": f"http://user:{TOKEN}@127.0.0.1/site.git"}}
        assert (
            "without credentials"
            in function_error(rt.invoke(with_creds, headers=CREDS), "InvalidRequest")["errorMessage"]
        )
    finally:
        rt.kill()


def test_the_functions_token_goes_to_its_git_hosts_only_and_no_token_follows_a_redirect(oss, repo):
    """FCBUILD_GIT_HOSTS names 127.0.0.1: a request naming a repository on 127.0.0.2 does not get
    the function's token (the server there sees no Authorization). A server that redirects to
    another host is not followed, with the function's token or the request's own."""
    server, _, _ = repo
    elsewhere = GitServer(server.root, host="127.0.0.2")
    mover = GitServer(server.root, redirect=elsewhere)
    rt = start_runtime({**LOCAL_GIT, "FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_GIT_TOKEN": TOKEN})
    try:
        other_host = {"source": {"git": elsewhere.url("site.git")}, "target": "oss://site/git-other/"}
        assert "refused" in function_error(rt.invoke(other_host, headers=CREDS), "InvalidSource")["errorMessage"]
        assert elsewhere.requests and not any(elsewhere.authorizations)
        assert "not sending FCBUILD_GIT_TOKEN to 127.0.0.2" in rt.output()
        seen = len(elsewhere.requests)
        for source in ({"git": mover.url("site.git")}, {"git": mover.url("site.git"), "token": TOKEN}):
            event = {"source": source, "target": "oss://site/git-moved/"}
            message = function_error(rt.invoke(event, headers=CREDS), "InvalidSource")["errorMessage"]
            assert "redirect" in message, message
        assert len(mover.requests) == 2 and all(mover.authorizations)
        assert len(elsewhere.requests) == seen  # the redirect's target was never asked
    finally:
        rt.kill()
        elsewhere.shutdown()
        mover.shutdown()


def test_a_repository_on_a_private_address_is_refused_unless_the_function_allows_it(oss, repo):
    server, _, _ = repo
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint})
    try:
        seen = len(server.requests)
        event = {"source": {"git": server.url("site.git"), "token": TOKEN}, "target": "oss://site/git-ssrf/"}
        message = function_error(rt.invoke(event, headers=CREDS), "AccessDenied")["errorMessage"]
        assert "loopback" in message and "FCBUILD_ALLOW_PRIVATE_NETS" in message
        assert len(server.requests) == seen
    finally:
        rt.kill()
