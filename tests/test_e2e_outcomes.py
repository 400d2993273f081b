"""Every build's outcome is known: a status object for every request, replay of a retried request,
and signed notifications, through the real fcbuild process against local receivers that check each
format's signature the way DingTalk, Feishu, WeCom and a generic webhook consumer would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import oss2
import pytest

from localoss import LocalOss
from tests.archives import pack_tar
from tests.conftest import AK, REGION, STS, self_signed_tls
from tests.runtime_proc import function_error, start_runtime
from tests.test_e2e_build import CREDS, TINY

SECRET = "hook-secret-7f3a9c"
BOT_SECRET = "SECbot-secret-2b8d4e"


class Receiver(ThreadingHTTPServer):
    """A webhook receiver: records what came, checks the signature of its kind, answers `status`
    (or hangs until released)."""

    daemon_threads = True

    def __init__(
        self,
        kind: str,
        status: int = 200,
        hang: bool = False,
        tls: ssl.SSLContext | None = None,
        location: str = "",
        answer: dict | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.location, self.answer = location, answer
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.kind, self.status, self.hang, self.scheme = kind, status, hang, "https" if tls else "http"
        self.got: list[dict] = []
        self.release = threading.Event()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}/hook?access_token=tok-{self.kind}-123456"

    def verify(self, path: str, headers: dict, body: bytes) -> bool:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
        if self.kind == "webhook":
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            return hmac.compare_digest(headers.get("x-fcbuild-signature", ""), expected)
        if self.kind == "dingtalk":
            stamp = query.get("timestamp", "")
            mac = hmac.new(BOT_SECRET.encode(), f"{stamp}\n{BOT_SECRET}".encode(), hashlib.sha256).digest()
            fresh = abs(time.time() * 1000 - int(stamp or 0)) < 3600_000
            return fresh and query.get("sign") == base64.b64encode(mac).decode()
        if self.kind == "feishu":
            doc = json.loads(body)
            mac = hmac.new(f"{doc.get('timestamp')}\n{BOT_SECRET}".encode(), b"", hashlib.sha256).digest()
            return doc.get("sign") == base64.b64encode(mac).decode()
        return True  # wecom: the key in the URL is the credential

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up on a hanging receiver


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        ok = self.server.verify(self.path, headers, body)
        self.server.got.append({"path": self.path, "headers": headers, "body": body, "signed": ok})
        if self.server.hang:
            self.server.release.wait(60)
        answer = {"errcode": 0, "errmsg": "ok"} if ok else {"errcode": 310000, "errmsg": "sign not match"}
        if self.server.kind == "feishu":
            answer = {"code": 0, "msg": "success"} if ok else {"code": 19021, "msg": "sign match fail"}
        data = json.dumps(self.server.answer or answer).encode()
        self.send_response(self.server.status)
        if self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def oss(tmp_path_factory):
    with LocalOss(str(tmp_path_factory.mktemp("oss")), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as s:
        oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), s.endpoint, "src", region=REGION).put_object(
            "tiny.tar.gz", pack_tar(TINY)
        )
        yield s


@pytest.fixture(scope="module")
def runtime(oss):
    # The receivers here listen on 127.0.0.1: an address requests may reach only when the function allows it.
    rt = start_runtime(
        {
            "FCBUILD_OSS_ENDPOINT": oss.endpoint,
            "FCBUILD_UPLOAD_MARGIN_S": "2",
            "FCBUILD_ALLOW_PRIVATE_NETS": "127.0.0.1",
        }
    )
    yield rt
    rt.kill()


def site(oss):
    return oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "site", region=REGION)


def status(oss, prefix, rid):
    return json.loads(site(oss).get_object(f"{prefix}.fcbuild/status/{rid}.json").read())


def test_every_build_has_a_status_and_a_retry_replays_it(oss, runtime):
    event = {"source": "oss://src/tiny.tar.gz", "target": "oss://site/st/"}
    first = runtime.invoke(event, headers=CREDS, request_id="sync-1")
    assert first.status == 200, first.body
    doc = status(oss, "st/", "sync-1")
    assert doc["status"] == "succeeded" and doc["invocationType"] == "Sync" and doc["result"]["requestId"] == "sync-1"
    assert site(oss).get_object_acl("st/.fcbuild/status/sync-1.json").acl == "private"
    manifest = site(oss).get_object("st/.fcbuild/manifest.json").read()
    again = runtime.invoke(event, headers={**CREDS, "x-fc-retry-count": "1"}, request_id="sync-1")
    assert again.status == 200 and again.json()["replayed"] is True
    assert site(oss).get_object("st/.fcbuild/manifest.json").read() == manifest  # no second deploy
    failed = runtime.invoke({**event, "build": {"env": {"BUILD_FAIL": "1"}}}, headers=CREDS, request_id="sync-2")
    function_error(failed, "BuildFailed")
    assert status(oss, "st/", "sync-2")["status"] == "failed"


def test_a_retry_waits_for_an_earlier_attempt_that_is_still_running(oss, runtime):
    """An earlier attempt of this request id is running elsewhere: the retry waits for it, then
    answers with its result instead of deploying again."""
    rid = "elsewhere-1"
    key = f"wait/.fcbuild/status/{rid}.json"
    running = {"requestId": rid, "status": "running", "startedAtEpoch": time.time(), "attempt": 1}
    site(oss).put_object(key, json.dumps(running))
    result = {"requestId": rid, "status": "succeeded", "release": rid, "files": {"uploaded": 3}}

    def finish_elsewhere():
        time.sleep(3)
        site(oss).put_object(key, json.dumps({**running, "status": "succeeded", "result": result}))

    threading.Thread(target=finish_elsewhere, daemon=True).start()
    event = {"source": "oss://src/tiny.tar.gz", "target": "oss://site/wait/"}
    resp = runtime.invoke(event, headers={**CREDS, "x-fc-retry-count": "1"}, request_id=rid)
    assert resp.status == 200 and resp.json() == {**result, "replayed": True}
    assert "an earlier attempt is still running" in runtime.output()
    assert not list(oss2.ObjectIteratorV2(site(oss), prefix="wait/assets/"))  # nothing was built here


def test_notifications_in_each_format_signed_and_free_of_secrets(oss, runtime):
    receivers = {kind: Receiver(kind) for kind in ("webhook", "dingtalk", "feishu", "wecom")}
    notify = [
        {"type": "webhook", "url": receivers["webhook"].url, "secret": SECRET},
        {"type": "dingtalk", "url": receivers["dingtalk"].url, "secret": BOT_SECRET},
        {"type": "feishu", "url": receivers["feishu"].url, "secret": BOT_SECRET},
        {"type": "wecom", "url": receivers["wecom"].url, "on": ["failure"]},
    ]
    event = {
        "source": "oss://src/tiny.tar.gz",
        "target": "oss://site/hooks/",
        "cdn": {"domains": ["www.example.com"]},
        "notify": notify,
    }
    resp = runtime.invoke(event, headers=CREDS, request_id="hooked-1")
    result = resp.json()
    assert resp.status == 200 or result.get("errorType") == "BuildFailed", resp.body
    sent = {r["to"].split()[0]: r for r in result["notifications"]}
    assert set(sent) == {"webhook", "dingtalk", "feishu"} and all(r["ok"] for r in sent.values()), sent
    hook = receivers["webhook"].got[0]
    assert hook["signed"] and hook["headers"]["x-fcbuild-event"] == "build.succeeded"
    assert json.loads(hook["body"])["release"] == "hooked-1"
    ding = json.loads(receivers["dingtalk"].got[0]["body"])
    assert receivers["dingtalk"].got[0]["signed"] and ding["msgtype"] == "markdown"
    assert "https://www.example.com/hooks/" in ding["markdown"]["text"]
    assert (
        receivers["feishu"].got[0]["signed"]
        and "deployed" in json.loads(receivers["feishu"].got[0]["body"])["content"]["text"]
    )
    assert not receivers["wecom"].got  # it asked for failures only
    failed = runtime.invoke({**event, "build": {"env": {"BUILD_FAIL": "1"}}}, headers=CREDS, request_id="hooked-2")
    function_error(failed, "BuildFailed")
    wecom = json.loads(receivers["wecom"].got[0]["body"])
    assert "failed (BuildFailed)" in wecom["markdown"]["content"] and "TS2304" in wecom["markdown"]["content"]
    everything = b"".join(g["body"] + json.dumps(g["headers"]).encode() for r in receivers.values() for g in r.got)
    everything += runtime.output().encode()
    for secret in (SECRET, BOT_SECRET, STS.access_key_secret, STS.security_token, "tok-dingtalk-123456"):
        if secret.startswith("tok-"):
            assert secret.encode() not in runtime.output().encode()  # the bot's token: in its own URL only
        else:
            assert secret.encode() not in everything, secret


def test_failing_hooks_never_fail_or_hold_up_the_build(oss, runtime):
    broken, hanging = Receiver("webhook", status=500), Receiver("webhook", hang=True)
    refused = "http://127.0.0.1:9/hook"  # nothing listens there
    event = {
        "source": "oss://src/tiny.tar.gz",
        "target": "oss://site/badhooks/",
        "notify": [
            {"url": broken.url, "secret": SECRET},
            {"url": hanging.url, "secret": SECRET},
            {"url": refused},
        ],
    }
    try:
        resp = runtime.invoke(event, headers=CREDS, request_id="badhooks-1", timeout=120)
        assert resp.status == 200, resp.body
        assert not hanging.release.is_set()  # answered while a receiver still holds its request
        notes = resp.json()["notifications"]
        errors = [n for n in notes if n.get("ok") is False]
        assert any("HTTP 500" in n["error"] for n in errors) and any("Connection" in n["error"] for n in errors)
        assert {"pending": 1} in notes
        assert len(broken.got) == 3  # tried three times
    finally:
        hanging.release.set()


def test_hooks_over_https_trust_certifis_bundle_not_the_system_store(oss, tmp_path):
    """Receivers are verified against certifi's CA bundle, as the OSS and CDN clients are: the same
    trust on any image. A receiver whose certificate only SSL_CERT_FILE (the system store's override)
    vouches for is refused, and gets nothing."""
    receiver = Receiver("webhook", tls=self_signed_tls(tmp_path))
    env = {"FCBUILD_OSS_ENDPOINT": oss.endpoint, "SSL_CERT_FILE": str(tmp_path / "cert.pem")}
    rt = start_runtime({**env, "FCBUILD_ALLOW_PRIVATE_NETS": "127.0.0.1"})
    try:
        event = {
            "source": "oss://src/tiny.tar.gz",
            "target": "oss://site/tlshooks/",
            "notify": [{"url": receiver.url, "secret": SECRET}],
        }
        resp = rt.invoke(event, headers=CREDS, request_id="tls-hook-1", timeout=120)
        assert resp.status == 200, resp.body
        (note,) = resp.json()["notifications"]
        assert note["ok"] is False and "CERTIFICATE_VERIFY_FAILED" in note["error"], note
        assert not receiver.got
        assert SECRET not in rt.output()
    finally:
        rt.kill()


def test_a_receiver_on_this_instance_is_refused_unless_the_function_allows_its_network(oss):
    """A requester names webhooks on this host in every spelling: none is sent to (the receiver on
    127.0.0.1 gets nothing), each is reported refused with what kind of address it is, and the
    build itself succeeds."""
    receiver = Receiver("webhook")
    port = receiver.server_address[1]
    urls = [f"http://{host}:{port}/hook" for host in ("127.0.0.1", "localhost", "0.0.0.0", "127.9.9.9", "[::1]")]
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint})
    try:
        event = {"source": "oss://src/tiny.tar.gz", "target": "oss://site/ssrf/", "notify": [{"url": u} for u in urls]}
        resp = rt.invoke(event, headers=CREDS, request_id="ssrf-1", timeout=120)
        assert resp.status == 200, resp.body
        notes = resp.json()["notifications"]
        assert len(notes) == len(urls) and not any(n["ok"] for n in notes), notes
        assert all("FCBUILD_ALLOW_PRIVATE_NETS" in n["error"] for n in notes), notes
        assert sum("loopback" in n["error"] for n in notes) == 4 and any("unspecified" in n["error"] for n in notes)
        assert not receiver.got
    finally:
        rt.kill()


def test_a_receivers_redirect_is_not_followed_and_its_words_stay_out_of_the_result(oss, runtime):
    target = Receiver("webhook")
    redirecting = Receiver("webhook", status=302, location=target.url)
    chatty = Receiver("dingtalk", answer={"errcode": 40035, "errmsg": "internal detail 10.1.2.3 must not leak"})
    event = {
        "source": "oss://src/tiny.tar.gz",
        "target": "oss://site/redirects/",
        "notify": [{"url": redirecting.url, "secret": SECRET}, {"type": "dingtalk", "url": chatty.url}],
    }
    resp = runtime.invoke(event, headers=CREDS, request_id="redirect-1", timeout=120)
    assert resp.status == 200, resp.body
    notes = {n["to"].split()[0]: n for n in resp.json()["notifications"]}
    assert notes["webhook"]["error"] == "HTTP 302 (a redirect, not followed)", notes
    assert len(redirecting.got) == 1 and not target.got  # one try, and the redirect's target got nothing
    assert notes["dingtalk"]["error"] == "dingtalk error 40035"
    assert "internal detail" not in resp.body.decode() and "internal detail" not in runtime.output()


def test_notify_from_the_projects_fcbuild_json_is_delivered(oss, runtime, tmp_path):
    """The project's fcbuild.json names a webhook: it is sent to (it was reported as taken from the
    file and never delivered), signed with the file's secret, and listed in the result."""
    import shutil

    receiver = Receiver("webhook")
    project = tmp_path / "project"
    shutil.copytree(TINY, project)
    (project / "fcbuild.json").write_text(json.dumps({"notify": [{"url": receiver.url, "secret": SECRET}]}))
    src = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "src", region=REGION)
    src.put_object("with-notify.tar.gz", pack_tar(str(project)))
    event = {"source": "oss://src/with-notify.tar.gz", "target": "oss://site/filehooks/"}
    resp = runtime.invoke(event, headers=CREDS, request_id="filehook-1", timeout=120)
    assert resp.status == 200, resp.body
    result = resp.json()
    assert "notify" in result["config"]["file"]
    assert [n["ok"] for n in result["notifications"]] == [True], result["notifications"]
    (got,) = receiver.got
    assert got["signed"] and json.loads(got["body"])["release"] == "filehook-1"
    assert SECRET not in runtime.output()
