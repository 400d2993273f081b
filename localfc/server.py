"""The stand-in's HTTP server: signature checks, then the invocation of a runtime."""

from __future__ import annotations

import argparse
import calendar
import hashlib
import hmac
import http.client
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "ACS3-HMAC-SHA256"
API_VERSION = "2023-03-30"
DATE_WINDOW_S = 15 * 60
INVOKE_RE = re.compile(r"^/2023-03-30/functions/([A-Za-z0-9_-]{1,128})/invocations$")


def _encode(text: str) -> str:
    """RFC 3986 percent-encoding: only unreserved characters stay as they are."""
    return quote(text, safe="-_.~")


def canonical_request(method: str, raw_path: str, headers: dict[str, str], signed: list[str], payload_hash: str) -> str:
    parts = urlsplit(raw_path)
    uri = "/".join(_encode(segment) for segment in parts.path.split("/")) or "/"
    pairs = sorted((_encode(k), _encode(v)) for k, v in parse_qsl(parts.query, keep_blank_values=True))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    return "\n".join([method, uri, query, canonical_headers, ";".join(signed), payload_hash])


class FcStandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        access_key_id: str,
        access_key_secret: str,
        security_token: str,
        runtime: str,
        account_id: str = "1234567890",
        region: str = "cn-hangzhou",
        functions: tuple[str, ...] = ("fcbuild",),
        runtime_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(address, Handler)
        self.access_key_id, self.access_key_secret, self.security_token = (
            access_key_id,
            access_key_secret,
            security_token,
        )
        self.runtime = runtime  # host:port of the runtime FC calls
        self.account_id, self.region, self.functions = account_id, region, functions
        self.runtime_headers = runtime_headers or {}
        self.lock = threading.Lock()
        self.nonces: set[str] = set()
        self.invocations: list[dict[str, Any]] = []
        self.refusals: list[dict[str, Any]] = []

    def check(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> str:
        """Why FC would refuse the request ("" when it would not)."""
        auth = headers.get("authorization", "")
        match = re.fullmatch(
            rf"{ALGORITHM} Credential=([^,]+),SignedHeaders=([a-z0-9;-]+),Signature=([0-9a-f]{{64}})", auth
        )
        if not match:
            return "InvalidAuthorization: not an ACS3-HMAC-SHA256 Authorization header"
        key_id, signed_text, signature = match.groups()
        signed = signed_text.split(";")
        if key_id != self.access_key_id:
            return "InvalidAccessKeyId.NotFound"
        if signed != sorted(signed):
            return "IncompleteSignature: SignedHeaders are not in order"
        for needed in (
            "host",
            "x-acs-action",
            "x-acs-content-sha256",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-version",
        ):
            if needed not in signed:
                return f"IncompleteSignature: {needed} is not signed"
        if headers.get("x-acs-version") != API_VERSION or headers.get("x-acs-action") != "InvokeFunction":
            return "InvalidVersion or InvalidAction"
        if headers.get("x-acs-security-token") != self.security_token or "x-acs-security-token" not in signed:
            return "InvalidSecurityToken"
        if hashlib.sha256(body).hexdigest() != headers.get("x-acs-content-sha256"):
            return "ContentSHA256Mismatch"
        try:
            when = calendar.timegm(time.strptime(headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return "InvalidTimeStamp.Format"
        if abs(time.time() - when) > DATE_WINDOW_S:
            return "InvalidTimeStamp.Expired"
        request = canonical_request(method, raw_path, headers, signed, headers["x-acs-content-sha256"])
        to_sign = f"{ALGORITHM}\n{hashlib.sha256(request.encode()).hexdigest()}"
        want = hmac.new(self.access_key_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, signature):
            return "SignatureDoesNotMatch"
        nonce = headers.get("x-acs-signature-nonce", "")
        with self.lock:
            if not nonce or nonce in self.nonces:
                return "SignatureNonceUsed"
            self.nonces.add(nonce)
        return ""

    def call_runtime(self, function: str, qualifier: str, body: bytes, request_id: str, mode: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "requestId": request_id,
            "function": function,
            "qualifier": qualifier,
            "invocationType": mode,
            "body": body.decode("utf-8", "replace"),
            "state": "Running",
            "startedAt": time.time(),
        }
        with self.lock:
            self.invocations.append(record)
        headers = {
            "Content-Type": "application/octet-stream",
            "x-fc-request-id": request_id,
            "x-fc-function-name": function,
            "x-fc-qualifier": qualifier or "LATEST",
            "x-fc-region": self.region,
            "x-fc-account-id": self.account_id,
            "x-fc-control-path": "/invoke",
            "x-fc-retry-count": "0",
            **self.runtime_headers,
        }
        conn = http.client.HTTPConnection(self.runtime, timeout=3600)
        try:
            conn.request("POST", "/invoke", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            failed = response.getheader("x-fc-status") == "404"
            record.update(state="Failed" if failed else "Succeeded", status=response.status)
            try:
                record["result"] = json.loads(answer)
            except ValueError:
                record["result"] = answer.decode("utf-8", "replace")
        except OSError as exc:
            record.update(state="Failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
            record["finishedAt"] = time.time()
        return record


class Handler(BaseHTTPRequestHandler):
    server: FcStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/_standin/invocations":
            with self.server.lock:
                self._send(200, {"invocations": list(self.server.invocations), "refusals": list(self.server.refusals)})
            return
        self._send(404, {"Code": "NotFound"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = urlsplit(self.path)
        match = INVOKE_RE.match(path.path)
        if not match:
            self._send(404, {"Code": "NotFound", "Message": f"no API at {path.path}"})
            return
        why = self.server.check("POST", self.path, headers, body)
        if why:
            with self.server.lock:
                self.server.refusals.append({"path": path.path, "reason": why})
            code = why.split(":")[0]
            self._send(
                403 if "Signature" in why or "AccessKey" in why or "Token" in why else 400,
                {"Code": code, "Message": why},
            )
            return
        function = match.group(1)
        if function not in self.server.functions:
            self._send(404, {"Code": "FunctionNotFound", "Message": f"function {function} does not exist"})
            return
        qualifier = dict(parse_qsl(path.query)).get("qualifier", "LATEST")
        mode = headers.get("x-fc-invocation-type", "Sync")
        request_id = "1-" + uuid.uuid4().hex[:24]
        if mode == "Async":
            if length > 128 * 1024:
                self._send(400, {"Code": "InvalidArgument", "Message": "async payloads are at most 128 KB"})
                return
            threading.Thread(
                target=self.server.call_runtime, args=(function, qualifier, body, request_id, mode), daemon=True
            ).start()
            self._send(202, {}, {"x-fc-request-id": request_id})
            return
        record = self.server.call_runtime(function, qualifier, body, request_id, mode)
        result = record.get("result", "")
        self._send(200, result, {"x-fc-request-id": request_id})


def serve(**kwargs: Any) -> FcStandIn:
    server = FcStandIn(**kwargs)
    threading.Thread(target=server.serve_forever, name="localfc", daemon=True).start()
    return server


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m localfc", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--runtime", required=True, help="host:port of the runtime to invoke")
    parser.add_argument("--access-key-id", required=True)
    parser.add_argument("--access-key-secret", required=True)
    parser.add_argument("--security-token", required=True)
    parser.add_argument("--function", action="append", default=[])
    args = parser.parse_args(argv)
    server = FcStandIn(
        ("127.0.0.1", args.port),
        access_key_id=args.access_key_id,
        access_key_secret=args.access_key_secret,
        security_token=args.security_token,
        runtime=args.runtime,
        functions=tuple(args.function) or ("fcbuild",),
    )
    print(f"localfc listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
