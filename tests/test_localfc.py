"""The FC API stand-in takes what the official SDK (alibabacloud-fc20230330) sends, refuses what FC
would refuse, and calls the runtime as FC does."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from alibabacloud_fc20230330 import models
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as open_models
from alibabacloud_tea_util import models as util_models

import localfc
from tests.conftest import STS


class Runtime(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RuntimeHandler)
        self.calls: list[tuple[str, dict, bytes]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _RuntimeHandler(BaseHTTPRequestHandler):
    server: Runtime
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.calls.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        answer = b'{"built": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def fc():
    runtime = Runtime()
    standin = localfc.serve(
        address=("127.0.0.1", 0),
        access_key_id=STS.access_key_id,
        access_key_secret=STS.access_key_secret,
        security_token=STS.security_token,
        runtime=f"127.0.0.1:{runtime.server_address[1]}",
    )
    yield standin, runtime
    standin.shutdown()
    runtime.shutdown()


def sdk(standin, secret: str = STS.access_key_secret, token: str = STS.security_token) -> Client:
    config = open_models.Config(
        access_key_id=STS.access_key_id,
        access_key_secret=secret,
        security_token=token,
        endpoint=f"127.0.0.1:{standin.server_address[1]}",
        protocol="http",
        region_id="cn-hangzhou",
    )
    return Client(config)


def invoke(client: Client, body: bytes, mode: str = "Async"):
    headers = models.InvokeFunctionHeaders(x_fc_invocation_type=mode)
    request = models.InvokeFunctionRequest(body=body, qualifier="LATEST")
    return client.invoke_function_with_options("fcbuild", request, headers, util_models.RuntimeOptions())


def test_the_sdks_async_invocation_is_accepted_and_reaches_the_runtime_as_fc_calls_it(fc):
    standin, runtime = fc
    response = invoke(sdk(standin), b'{"source": "x"}')
    assert response.status_code == 202
    request_id = response.headers["x-fc-request-id"]
    deadline = time.monotonic() + 10
    while not runtime.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    path, headers, body = runtime.calls[0]
    assert (path, body) == ("/invoke", b'{"source": "x"}')
    assert headers["content-type"] == "application/octet-stream" and headers["x-fc-request-id"] == request_id
    assert headers["x-fc-function-name"] == "fcbuild" and headers["x-fc-region"] == "cn-hangzhou"
    sync = invoke(sdk(standin), b"{}", mode="Sync")
    assert sync.status_code == 200 and json.loads(sync.body.read()) == {"built": True}


@pytest.mark.parametrize("wrong", ["secret", "token"])
def test_a_wrong_secret_or_token_is_refused(fc, wrong):
    standin, runtime = fc
    client = sdk(standin, secret="not-it") if wrong == "secret" else sdk(standin, token="not-it")
    with pytest.raises(Exception) as refused:
        invoke(client, b"{}")
    assert ("SignatureDoesNotMatch" if wrong == "secret" else "InvalidSecurityToken") in str(refused.value)
    assert not runtime.calls


def replay(standin, headers: dict[str, str], body: bytes, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", standin.server_address[1])
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def test_a_replayed_nonce_a_changed_body_and_an_old_date_are_refused(fc):
    standin, runtime = fc
    captured: list[tuple[dict, bytes, str]] = []
    original = localfc.FcStandIn.check

    def spy(self, method, raw_path, headers, body):  # keep what the SDK sent, to send it again
        captured.append((dict(headers), body, raw_path))
        return original(self, method, raw_path, headers, body)

    localfc.FcStandIn.check = spy
    try:
        invoke(sdk(standin), b'{"a": 1}')
    finally:
        localfc.FcStandIn.check = original
    headers, body, path = captured[0]
    assert replay(standin, headers, body, path)[1]["Code"] == "SignatureNonceUsed"
    changed = {**headers, "x-acs-signature-nonce": "fresh-nonce-1"}
    assert replay(standin, changed, body, path)[1]["Code"] == "SignatureDoesNotMatch"
    other_body = {**headers, "x-acs-signature-nonce": "fresh-nonce-2"}
    assert replay(standin, other_body, b'{"a": 2}', path)[1]["Code"] == "ContentSHA256Mismatch"
    digest = hashlib.sha256(b'{"a": 2}').hexdigest()
    resigned_digest = {**other_body, "x-acs-content-sha256": digest, "x-acs-signature-nonce": "fresh-nonce-3"}
    assert replay(standin, resigned_digest, b'{"a": 2}', path)[1]["Code"] == "SignatureDoesNotMatch"
    old = {**headers, "x-acs-date": "2020-01-01T00:00:00Z", "x-acs-signature-nonce": "fresh-nonce-4"}
    assert replay(standin, old, body, path)[1]["Code"] == "InvalidTimeStamp.Expired"
    assert len(runtime.calls) <= 1  # only the first, genuine invocation


def test_the_runtimes_own_signed_invocation_is_accepted_and_a_wrong_secret_is_not(fc):
    import fc_api
    from context import Credentials, FcContext

    standin, runtime = fc
    where = f"http://127.0.0.1:{standin.server_address[1]}"
    creds = Credentials(STS.access_key_id, STS.access_key_secret, STS.security_token)
    ctx = FcContext(request_id="r-1", function_name="fcbuild", qualifier="LATEST", credentials=creds)
    request_id = fc_api.invoke_async(ctx, b'{"from": "fcbuild"}', where)
    assert request_id.startswith("1-")
    deadline = time.monotonic() + 10
    while not runtime.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.calls[0][2] == b'{"from": "fcbuild"}'
    bad = FcContext(
        request_id="r-2",
        function_name="fcbuild",
        credentials=Credentials(STS.access_key_id, "wrong", STS.security_token),
    )
    with pytest.raises(fc_api.InvokeFailed) as refused:
        fc_api.invoke_async(bad, b"{}", where)
    assert "SignatureDoesNotMatch" in str(refused.value) and "wrong" not in str(refused.value)
    missing = FcContext(request_id="r-3", function_name="no-such-function", credentials=creds)
    with pytest.raises(fc_api.InvokeFailed) as not_found:
        fc_api.invoke_async(missing, b"{}", where)
    assert "FunctionNotFound" in str(not_found.value)
