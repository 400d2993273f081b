"""CDN refresh after a deploy, checked call by call against a local CDN API endpoint that verifies
the RPC signature (HMAC-SHA1 over the canonical query, computed here, not by the SDK)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from cdn_io import refresh_request, refresh_urls_for
from localoss import LocalOss
from tests.archives import pack_tar
from tests.conftest import AK, REGION, STS, self_signed_tls
from tests.runtime_proc import start_runtime
from tests.test_e2e_build import CREDS, TINY, raw


def _pop_encode(text: str) -> str:
    return quote(text, safe="~")


class FakeCdnApi(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))

    def do_POST(self) -> None:
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        params.update(parse_qsl(body, keep_blank_values=True))
        self._answer(params)

    def _answer(self, params: dict[str, str]) -> None:
        api = self.server.api  # type: ignore[attr-defined]
        signature = params.pop("Signature", "")
        canonical = "&".join(f"{_pop_encode(k)}={_pop_encode(v)}" for k, v in sorted(params.items()))
        to_sign = f"{self.command}&{_pop_encode('/')}&{_pop_encode(canonical)}"
        expected = base64.b64encode(
            hmac.new((STS.access_key_secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
        ).decode()
        if signature != expected or params.get("SecurityToken") != STS.security_token:
            status, doc = 400, {"Code": "SignatureDoesNotMatch", "Message": "bad signature", "RequestId": "r"}
        elif api["quota_left"] is not None and api["quota_left"] < len(params["ObjectPath"].split("\n")):
            status, doc = 400, {"Code": "QuotaExceeded.Refresh", "Message": "daily quota used up", "RequestId": "q"}
        else:
            api["calls"].append(params)
            status, doc = 200, {"RequestId": "ok", "RefreshTaskId": str(len(api["calls"]))}
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def serve_cdn_api(tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    """The local CDN API, serving on a thread; over TLS with `tls`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCdnApi)
    server.api = {"calls": [], "quota_left": None}  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def cdn_api():
    server = serve_cdn_api()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def oss(tmp_path):
    with LocalOss(str(tmp_path / "oss"), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as server:
        raw(server, "src").put_object("tiny.tar.gz", pack_tar(TINY))
        yield server


def test_urls_for_changed_paths():
    urls = refresh_urls_for(["index.html", "docs/index.html", "a b.txt"], ["www.example.com"], "https", "shop/")
    assert urls == [
        "https://www.example.com/shop/a%20b.txt",
        "https://www.example.com/shop/docs/index.html",
        "https://www.example.com/shop/docs/",
        "https://www.example.com/shop/index.html",
        "https://www.example.com/shop/",
    ]


def test_refresh_calls_go_over_https_unless_the_endpoint_says_http():
    """The CDN SDK's default is plain HTTP, and it enables TLS only for its own "https" constant
    (compared by identity): a call must carry that constant unless a test endpoint asks for http."""
    from aliyunsdkcdn.request.v20180510.RefreshObjectCachesRequest import RefreshObjectCachesRequest
    from aliyunsdkcore.http import protocol_type

    urls = ["https://www.example.com/index.html"]
    assert refresh_request(RefreshObjectCachesRequest, urls).get_protocol_type() is protocol_type.HTTPS
    https = "".join(["https", "://cdn.example.com:8443"])  # a string built at run time, as from the environment
    assert refresh_request(RefreshObjectCachesRequest, urls, https).get_protocol_type() is protocol_type.HTTPS
    http = refresh_request(RefreshObjectCachesRequest, urls, "http://127.0.0.1:8080")
    assert http.get_protocol_type() is protocol_type.HTTP and http.endpoint == "127.0.0.1:8080"


def test_refresh_after_deploy_names_only_changed_unhashed_urls(oss, cdn_api, tmp_path):
    rt = start_runtime(
        {"FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_CDN_ENDPOINT": f"http://127.0.0.1:{cdn_api.server_port}"}
    )
    try:
        event = {
            "source": "oss://src/tiny.tar.gz",
            "target": {"bucket": "site", "prefix": "shop/"},
            "cdn": {"domains": ["www.example.com", "cdn.example.com"]},
        }
        first = rt.invoke(event, headers=CREDS)
        assert first.status == 200, first.body
        assert first.json()["cdn"] == {"urls": 6, "refreshed": 6, "taskIds": ["1"]}
        (call,) = cdn_api.api["calls"]
        assert call["Action"] == "RefreshObjectCaches" and call["ObjectType"] == "File"
        assert sorted(call["ObjectPath"].split("\n")) == sorted(
            f"https://{d}/shop/{p}"
            for d in ("www.example.com", "cdn.example.com")
            for p in ("favicon.svg", "index.html", "")
        )  # the hashed assets are never refreshed
        again = rt.invoke(event, headers=CREDS)  # nothing changed: nothing to refresh
        assert again.json()["cdn"] == {"urls": 0, "refreshed": 0, "taskIds": []}
        assert len(cdn_api.api["calls"]) == 1
    finally:
        assert rt.stop() == 0


def deploy_with_failed_refresh(oss, cdn_endpoint: str, prefix: str) -> dict:  # type: ignore[no-untyped-def]
    """Deploy the tiny site to `prefix` with a refresh through `cdn_endpoint` that fails: the deploy
    stands and no credential is in the answer. Returns the answer's `cdn` report."""
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_CDN_ENDPOINT": cdn_endpoint})
    try:
        event = {"source": "oss://src/tiny.tar.gz", "target": f"oss://site/{prefix}", "cdn": ["www.example.com"]}
        resp = rt.invoke(event, headers=CREDS)
        assert resp.status == 200, resp.body
        assert raw(oss, "site").object_exists(f"{prefix}index.html")
        body = resp.body.decode()
        assert STS.access_key_secret not in body and STS.security_token not in body
        cdn = resp.json()["cdn"]
        assert cdn["refreshed"] == 0
        return cdn
    finally:
        assert rt.stop() == 0


def test_quota_exhaustion_is_reported_and_the_deploy_stands(oss, cdn_api):
    cdn_api.api["quota_left"] = 0
    cdn = deploy_with_failed_refresh(oss, f"http://127.0.0.1:{cdn_api.server_port}", "q/")
    assert "daily refresh quota is used up" in cdn["error"] and "QuotaExceeded.Refresh" in cdn["error"]


def test_a_cdn_api_whose_certificate_does_not_verify_is_refused(oss, tmp_path):
    """The CDN SDK verifies TLS against the bundled CAs: a self-signed endpoint never sees the call
    (nor the STS token), and the error says why, not that a CA bundle is missing."""
    cdn_api = serve_cdn_api(self_signed_tls(tmp_path))
    try:
        cdn = deploy_with_failed_refresh(oss, f"https://127.0.0.1:{cdn_api.server_port}", "tls/")
        assert "could not be reached" in cdn["error"]
        assert "CERTIFICATE_VERIFY_FAILED" in cdn["error"], cdn["error"]
        assert cdn_api.api["calls"] == []  # type: ignore[attr-defined]
    finally:
        cdn_api.shutdown()
        cdn_api.server_close()


def test_cdn_field_is_validated(oss):
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint})
    try:
        event = {"source": "oss://src/tiny.tar.gz", "target": "oss://site/v/", "cdn": {"domains": ["not a host"]}}
        resp = rt.invoke(event, headers=CREDS)
        assert resp.json()["errorType"] == "InvalidRequest" and "cdn.domains[0]" in resp.json()["errorMessage"]
    finally:
        assert rt.stop() == 0
