"""The HTTP server: routing a request to its operation, and the operations themselves."""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import random
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from localoss.buckets import BucketOps
from localoss.crc import crc64
from localoss.errors import OssError, _no_such_bucket, _xml
from localoss.faults import ERROR_CODES, Faults
from localoss.multipart import MultipartOps
from localoss.objects import ObjectOps
from localoss.signing import Account, Request, Verifier
from localoss.store import Store, _remove, valid_bucket_name
from localoss.website import Website, WebsiteOps
from localoss.wire import CHUNK, SITE_PREFIX, STATS_PATH, _Reset

# --- the HTTP server -----------------------------------------------------------------------


class OssServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        root: str,
        accounts: Iterable[Account],
        *,
        region: str = "cn-hangzhou",
        faults: Faults | None = None,
        quiet: bool = True,
        domain: str = "",
        website: Website | None = None,
    ) -> None:
        super().__init__(address, OssHandler)
        self.store = Store(root)
        # Virtual-hosted style: a request for Host `<bucket>.<domain>` names the bucket by its host.
        self.domain = domain.lower()
        # Unsigned GETs at / serve this bucket (and prefix) as its domain would, when set.
        self.website = website
        self.verifier = Verifier(accounts, region)
        self.faults = faults or Faults()
        self.quiet = quiet
        self._count_lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.history: collections.deque[tuple[str, str]] = collections.deque(maxlen=100_000)  # (operation, key)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # a client that went away (or a reset we injected): nothing to report
        super().handle_error(request, client_address)

    def count(self, op: str, key: str = "") -> None:
        with self._count_lock:
            self.counts[op] = self.counts.get(op, 0) + 1
            self.history.append((op, key))

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class OssHandler(ObjectOps, MultipartOps, BucketOps, WebsiteOps, BaseHTTPRequestHandler):
    server: OssServer
    protocol_version = "HTTP/1.1"
    server_version = "AliyunOSS"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write("localoss: " + (format % args) + "\n")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # dispatch
    def _handle(self, method: str) -> None:
        self.request_id = uuid.uuid4().hex[:24].upper()
        self.body_read = False
        split = urlsplit(self.path)
        if split.path == STATS_PATH and method == "GET":
            with self.server._count_lock:
                counts = dict(self.server.counts)
            self._send(200, {"Content-Type": "application/json"}, json.dumps(counts).encode())
            return
        if split.path.startswith(SITE_PREFIX) and method in ("GET", "HEAD"):
            self._serve_site(method, split.path[len(SITE_PREFIX) :])
            return
        if self.server.website is not None and method in ("GET", "HEAD") and self._anonymous(split.query):
            self._serve_website(method, split.path)
            return
        host = self.headers.get("Host", "").rsplit(":", 1)[0].lower()
        if self.server.domain and host.endswith("." + self.server.domain):
            bucket, raw_key = host[: -len(self.server.domain) - 1], split.path.lstrip("/")
        else:
            bucket, _, raw_key = split.path.lstrip("/").partition("/")
        req = Request(
            method=method,
            bucket=unquote(bucket),
            key=unquote(raw_key),
            query=parse_qsl(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        op = _operation(req)
        faults = self.server.faults
        applies = not faults.only or op in faults.only
        self.reset_after: int | None = None
        try:
            if req.bucket and not valid_bucket_name(req.bucket):
                raise OssError(400, "InvalidBucketName", "The specified bucket is not valid.", "0015-00000101")
            if faults.latency_s:
                time.sleep(faults.latency_s)
            rule = faults.fire(method, req.key, op) if faults.rules else None
            if rule is not None:
                if rule.delay_s:
                    time.sleep(rule.delay_s)
                if rule.status:
                    code = ERROR_CODES.get(rule.status, "InjectedFault")
                    raise OssError(rule.status, code, "Injected fault (a fault rule).")
                if rule.reset_after == 0:
                    raise _Reset
                self.reset_after = rule.reset_after
            if applies and faults.roll(faults.error_rate):
                status, code = random.choice([(500, "InternalError"), (503, "ServiceUnavailable")])
                raise OssError(status, code, "Injected fault: please retry.")
            if applies and faults.roll(faults.reset_rate):
                raise _Reset
            self.server.verifier.verify(req)
            self.server.count(op, req.key)
            getattr(self, f"op_{op}")(req, corrupt=applies and faults.roll(faults.corrupt_rate))
        except OssError as err:
            self._send_error(err, method)
        except _Reset:
            self._reset()

    def _reset(self) -> None:
        """Read part of the body (if any), then drop the connection with a TCP RST. A response cut after
        some of its body (reset_after > 0) ends with a FIN instead: a RST makes the client's kernel
        discard what it received but its reader had not read yet, so the bytes sent would not all arrive."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(max(1, length // 2))
        if not self.reset_after:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # responses
    def _send(
        self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b"", *, length: int | None = None
    ) -> None:
        if not self.body_read and self.command in ("PUT", "POST"):
            self.close_connection = True  # the request body was not consumed
        self.send_response(status)
        self.send_header("x-oss-request-id", self.request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status == 304:  # no body, and no length of one
            body = b""
        else:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, err: OssError, method: str) -> None:
        if err.status == 304:
            self._send(304, err.extra)
            return
        children = [("Code", err.code), ("Message", err.message), ("RequestId", self.request_id)]
        children.append(("HostId", self.headers.get("Host", "localhost")))
        children.extend((k, v) for k, v in err.extra.items())
        if err.ec:
            children.append(("EC", err.ec))
        body = _xml("Error", children)
        headers = {"Content-Type": "application/xml"}
        if err.ec:
            headers["x-oss-ec"] = err.ec
        if method == "HEAD":
            headers["x-oss-err"] = base64.b64encode(body).decode()
        self._send(err.status, headers, b"" if method == "HEAD" else body)

    def _send_xml(self, root: str, children: list[tuple[str, Any]], headers: Mapping[str, str] | None = None) -> None:
        self._send(200, {"Content-Type": "application/xml", **(headers or {})}, _xml(root, children))

    # request bodies
    def _body_chunks(self) -> Iterable[bytes]:
        self.body_read = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, CHUNK))
                    if not chunk:
                        raise _Reset
                    remaining -= len(chunk)
                    yield chunk
                self.rfile.readline(1024)
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining:
            chunk = self.rfile.read(min(remaining, CHUNK))
            if not chunk:
                raise _Reset  # the client went away mid-body
            remaining -= len(chunk)
            yield chunk

    def _receive(self, bucket: str, *, corrupt: bool) -> tuple[str, int, bytes, int]:
        """Stream the request body to a temp file: (path, size, md5 digest, crc64)."""
        path = self.server.store.temp_path(bucket)
        md5, crc, size = hashlib.md5(), 0, 0
        try:
            with open(path, "wb") as f:
                for chunk in self._body_chunks():
                    if corrupt and size == 0 and chunk:
                        chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    md5.update(chunk)
                    crc = crc64(chunk, crc)
                    size += len(chunk)
                    f.write(chunk)
        except BaseException:
            _remove(path)
            raise
        try:
            self._check_md5(md5.digest())
        except OssError:
            _remove(path)
            raise
        return path, size, md5.digest(), crc

    def _read_small_body(self, limit: int = 1 << 20) -> bytes:
        data = b"".join(self._body_chunks())
        if len(data) > limit:
            raise OssError(400, "MalformedXML", "The XML you provided was not well-formed.")
        self._check_md5(hashlib.md5(data).digest())
        return data

    def op_unsupported(self, req: Request, *, corrupt: bool) -> None:
        raise OssError(400, "NotImplemented", f"This local server does not implement {req.method} with {req.query}.")

    # helpers
    def _check_md5(self, digest: bytes) -> None:
        """Content-MD5, when the request sent one, must match the body received."""
        expected = self.headers.get("Content-MD5")
        if expected is None:
            return
        try:
            well_formed = len(base64.b64decode(expected, validate=True)) == 16
        except ValueError:
            well_formed = False
        if not well_formed:  # OSS tells a malformed value from one that does not match
            raise OssError(400, "InvalidDigest", "The Content-MD5 you specified is not valid.", "0017-00000502")
        if expected != base64.b64encode(digest).decode():
            raise OssError(
                400, "InvalidDigest", "The Content-MD5 you specified did not match what was received.", "0017-00000503"
            )

    def _bucket(self, req: Request) -> None:
        if not req.bucket:
            raise OssError(400, "InvalidBucketName", "The specified bucket is not valid.")
        if not self.server.store.bucket_exists(req.bucket):
            raise _no_such_bucket(req.bucket)

    def _check_key(self, req: Request) -> None:
        if not req.key or len(req.key.encode()) > 1023 or req.key.startswith(("/", "\\")) or "\0" in req.key:
            raise OssError(400, "InvalidObjectName", "The specified object is not valid.", "0016-00000005")


def _operation(req: Request) -> str:
    """The OSS API operation a request names. Routed on parameter names, never on their order."""
    m = req.method
    if not req.key:
        if req.has("website") and m in ("GET", "PUT", "DELETE"):
            return {"GET": "get_bucket_website", "PUT": "put_bucket_website", "DELETE": "delete_bucket_website"}[m]
        if m == "PUT":
            return "put_bucket"
        if m == "DELETE":
            return "delete_bucket"
        if m == "POST" and req.has("delete"):
            return "delete_multiple"
        if m == "GET":
            return "list_multipart_uploads" if req.has("uploads") else "list_objects"
        return "unsupported"
    if req.has("acl") and m in ("GET", "PUT"):
        return "get_object_acl" if m == "GET" else "put_object_acl"
    if m == "PUT":
        if req.has("uploadId"):
            return "upload_part"
        return "copy_object" if "x-oss-copy-source" in req.headers else "put_object"
    if m == "POST":
        if req.has("uploads"):
            return "initiate_multipart"
        return "complete_multipart" if req.has("uploadId") else "unsupported"
    if m == "GET":
        return "list_parts" if req.has("uploadId") else "get_object"
    if m == "HEAD":
        return "get_object_meta" if req.has("objectMeta") else "head_object"
    if m == "DELETE":
        return "abort_multipart" if req.has("uploadId") else "delete_object"
    return "unsupported"
