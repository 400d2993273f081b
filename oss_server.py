"""A strict OSS-compatible server on local disk, for fcbuild's tests and demo. Standard library only.

It checks what real OSS checks (V1 and V4 signatures, STS tokens, clock skew, Content-MD5,
multipart rules), answers with OSS's error XML, and sends the CRC64 headers that oss2
verifies, so that a client passing against it has really been checked. It shares no code
with fcbuild's client: signatures, CRC64 and MD5 checks are computed here independently.

Requests are path-style: `http://HOST:PORT/<bucket>/<url-encoded key>`. Stored objects are
also served to a browser without signing at `/_site/<bucket>/<path>`, with `index.html` for
paths ending in `/`, like OSS static website hosting.

    python3 oss_server.py --root DIR [--host H] [--port P] [--bucket NAME ...]
                          [--access-key-id ID --access-key-secret SECRET [--security-token T]]
"""

from __future__ import annotations

import argparse
import base64
import calendar
import collections
import email.utils
import fnmatch
import hashlib
import hmac
import json
import os
import random
import shutil
import socket
import struct
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, quote, unquote, urlsplit

SITE_PREFIX = "/_site/"
OWNER_ID = "1234567890123456"  # the account that owns every bucket here
STATS_PATH = "/_stats"  # unsigned: request counts per operation, for benchmarks
MAX_SKEW_S = 15 * 60
MIN_PART_SIZE = 100 * 1024
MAX_PART_NUMBER = 10_000
MAX_DELETE_KEYS = 1000
CHUNK = 1 << 20

# Query keys that are part of a V1 signature's canonical resource (OSS's documented subresources).
V1_SUBRESOURCES = frozenset(
    (
        "acl",
        "uploads",
        "location",
        "cors",
        "logging",
        "website",
        "referer",
        "lifecycle",
        "delete",
        "append",
        "tagging",
        "objectMeta",
        "uploadId",
        "partNumber",
        "security-token",
        "position",
        "img",
        "style",
        "styleName",
        "replication",
        "replicationProgress",
        "replicationLocation",
        "cname",
        "bucketInfo",
        "comp",
        "qos",
        "live",
        "status",
        "vod",
        "startTime",
        "endTime",
        "symlink",
        "x-oss-process",
        "response-content-type",
        "x-oss-traffic-limit",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "udf",
        "udfName",
        "udfImage",
        "udfId",
        "udfImageDesc",
        "udfApplication",
        "udfApplicationLog",
        "restore",
        "callback",
        "callback-var",
        "qosInfo",
        "policy",
        "stat",
        "encryption",
        "versions",
        "versioning",
        "versionId",
        "requestPayment",
        "x-oss-request-payer",
        "sequential",
        "inventory",
        "inventoryId",
        "continuation-token",
        "asyncFetch",
        "worm",
        "wormId",
        "wormExtend",
        "withHashContext",
        "x-oss-enable-md5",
        "x-oss-enable-sha1",
        "x-oss-enable-sha256",
        "x-oss-hash-ctx",
        "x-oss-md5-ctx",
        "transferAcceleration",
        "regionList",
        "cloudboxes",
        "x-oss-ac-source-ip",
        "x-oss-ac-subnet-mask",
        "x-oss-ac-vpc-id",
        "x-oss-ac-forward-allow",
        "metaQuery",
        "resourceGroup",
        "rtc",
        "x-oss-async-process",
        "responseHeader",
        "httpsConfig",
        "publicAccessBlock",
        "accessPoint",
        "accessPointPolicy",
    )
)


# --- CRC-64/XZ (ECMA-182, reflected), by polynomial folding on Python integers ----------------
#
# A byte-at-a-time table loop in Python manages ~8 MB/s. Treating the data as one polynomial
# and folding it in half with carry-less multiplications by x^k mod P keeps the work in
# big-integer operations that run in C: ~40 MB/s.

_MASK64 = (1 << 64) - 1
_POLY = (1 << 64) | 0x42F0E1EBA9EA3693
_REV8 = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_xpow_cache: dict[int, int] = {}
_xpow_lock = threading.Lock()


def _reflect64(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "big").translate(_REV8), "little")


def _mod_small(value: int) -> int:
    n = value.bit_length()
    while n > 64:
        value ^= _POLY << (n - 65)
        n = value.bit_length()
    return value


def _clmul(big: int, small: int) -> int:
    result, shift = 0, 0
    while small:
        if small & 1:
            result ^= big << shift
        small >>= 1
        shift += 1
    return result


def _xpow(k: int) -> int:
    """x^k mod P."""
    cached = _xpow_cache.get(k)
    if cached is not None:
        return cached
    if k < 64:
        value = 1 << k
    else:
        half = _xpow(k // 2)
        value = _mod_small(_clmul(half, half))
        if k & 1:
            value = _mod_small(value << 1)
    with _xpow_lock:
        _xpow_cache[k] = value
    return value


def crc64(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-64/XZ of `data`, continuing from the CRC `crc` of what came before it."""
    nbits = len(data) * 8
    message = int.from_bytes(bytes(data).translate(_REV8), "big")
    value = (_reflect64(crc ^ _MASK64) << nbits) ^ (message << 64)
    size = nbits + 64
    while size > 128:
        k = (size // 2 + 63) // 64 * 64
        value = _clmul(value >> k, _xpow(k)) ^ (value & ((1 << k) - 1))
        size = max(k, size - k + 64)
    return _reflect64(_mod_small(value)) ^ _MASK64


def crc64_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC of A+B from crc(A), crc(B) and len(B), without the data (for multipart objects).

    With R(M) = (1s * x^len(M) + M * x^64) mod P and crc = reflect(R) ^ 1s:
    R(A+B) = x^(8*len2) * (R(A) + 1s) + R(B), and R(A) + 1s = reflect(crc(A)).
    """
    if len2 == 0:
        return crc1
    return _reflect64(_mod_small(_clmul(_reflect64(crc1), _xpow(8 * len2)))) ^ crc2


# --- errors -----------------------------------------------------------------------------------


class OssError(Exception):
    def __init__(self, status: int, code: str, message: str, ec: str = "", **extra: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.ec, self.extra = status, code, message, ec, extra


def _no_such_bucket(bucket: str) -> OssError:
    return OssError(404, "NoSuchBucket", "The specified bucket does not exist.", "0015-00000101", BucketName=bucket)


def _no_such_key(key: str) -> OssError:
    return OssError(404, "NoSuchKey", "The specified key does not exist.", "0026-00000001", Key=key)


# --- storage -------------------------------------------------------------------------------


@dataclass
class ObjectMeta:
    key: str
    size: int
    etag: str  # with quotes, upper-case hex as OSS sends it
    crc64: int
    content_type: str
    last_modified: float
    data_file: str
    object_type: str = "Normal"
    content_md5: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # cache-control, content-encoding, x-oss-meta-* ...
    acl: str = "default"  # x-oss-object-acl: default (the bucket's), private, public-read, public-read-write


OBJECT_ACLS = ("default", "private", "public-read", "public-read-write")


def _object_acl(headers: Mapping[str, str]) -> str:
    value = headers.get("x-oss-object-acl", "default")
    if value not in OBJECT_ACLS:
        raise OssError(400, "InvalidArgument", "no such object access control exists", "0016-00000105")
    return value


STORED_HEADERS = ("cache-control", "content-encoding", "content-disposition", "content-language", "expires")


class Store:
    """Buckets are folders under `root`; each holds `.oss/` with object data, metadata and uploads.

    Object data files are written to a temporary name and renamed; metadata too. An in-memory
    index per bucket (rebuilt from the metadata files at start) serves listings.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self._lock = threading.RLock()
        self._index: dict[str, dict[str, ObjectMeta]] = {}

    def _dir(self, bucket: str, *parts: str) -> str:
        return os.path.join(self.root, bucket, ".oss", *parts)

    def create_bucket(self, bucket: str) -> None:
        for sub in ("objects", "meta", "tmp", "uploads"):
            os.makedirs(self._dir(bucket, sub), exist_ok=True)

    def bucket_exists(self, bucket: str) -> bool:
        return os.path.isdir(self._dir(bucket, "objects"))

    def objects(self, bucket: str) -> dict[str, ObjectMeta]:
        with self._lock:
            index = self._index.get(bucket)
            if index is None:
                if not self.bucket_exists(bucket):
                    raise _no_such_bucket(bucket)
                index = {}
                meta_dir = self._dir(bucket, "meta")
                for name in os.listdir(meta_dir):
                    if name.endswith(".json"):
                        with open(os.path.join(meta_dir, name), encoding="utf-8") as f:
                            meta = ObjectMeta(**json.load(f))
                        index[meta.key] = meta
                self._index[bucket] = index
            return index

    def _meta_path(self, bucket: str, key: str) -> str:
        return self._dir(bucket, "meta", hashlib.sha256(key.encode()).hexdigest() + ".json")

    def temp_path(self, bucket: str) -> str:
        return self._dir(bucket, "tmp", uuid.uuid4().hex)

    def get(self, bucket: str, key: str) -> ObjectMeta:
        meta = self.objects(bucket).get(key)
        if meta is None:
            raise _no_such_key(key)
        return meta

    def open(self, bucket: str, meta: ObjectMeta) -> BinaryIO:
        return open(self._dir(bucket, "objects", meta.data_file), "rb")

    def commit(self, bucket: str, temp_file: str, meta: ObjectMeta, *, forbid_overwrite: bool = False) -> None:
        """Make `temp_file` the object's data, atomically replacing any previous version."""
        meta.data_file = uuid.uuid4().hex
        os.rename(temp_file, self._dir(bucket, "objects", meta.data_file))
        meta_path = self._meta_path(bucket, meta.key)
        with self._lock:
            index = self.objects(bucket)
            old = index.get(meta.key)
            if forbid_overwrite and old is not None:
                os.unlink(self._dir(bucket, "objects", meta.data_file))
                raise OssError(409, "FileAlreadyExists", "The object you specified already exists.", "0026-00000003")
            tmp_meta = self.temp_path(bucket)
            with open(tmp_meta, "w", encoding="utf-8") as f:
                json.dump(meta.__dict__, f)
            os.replace(tmp_meta, meta_path)
            index[meta.key] = meta
        if old is not None:
            self._unlink_data(bucket, old)

    def set_acl(self, bucket: str, key: str, acl: str) -> None:
        with self._lock:
            meta = self.get(bucket, key)
            meta.acl = acl
            tmp_meta = self.temp_path(bucket)
            with open(tmp_meta, "w", encoding="utf-8") as f:
                json.dump(meta.__dict__, f)
            os.replace(tmp_meta, self._meta_path(bucket, key))

    def delete(self, bucket: str, key: str) -> bool:
        meta_path = self._meta_path(bucket, key)
        with self._lock:
            old = self.objects(bucket).pop(key, None)
            if old is None:
                return False
            os.unlink(meta_path)
        self._unlink_data(bucket, old)
        return True

    def _unlink_data(self, bucket: str, meta: ObjectMeta) -> None:
        # A reader that opened the old file keeps reading it: unlink does not disturb it.
        try:
            os.unlink(self._dir(bucket, "objects", meta.data_file))
        except FileNotFoundError:
            pass

    def sorted_keys(self, bucket: str) -> list[str]:
        with self._lock:
            return sorted(self.objects(bucket), key=lambda k: k.encode())

    # multipart uploads: one folder each, a data file and a JSON file per part

    def upload_dir(self, bucket: str, upload_id: str) -> str:
        if not upload_id or not all(c in "0123456789abcdef" for c in upload_id):
            raise OssError(404, "NoSuchUpload", "The specified upload does not exist.", "0042-00000002")
        path = self._dir(bucket, "uploads", upload_id)
        if not os.path.isdir(path):
            raise OssError(404, "NoSuchUpload", "The specified upload does not exist.", "0042-00000002")
        return path


# --- faults --------------------------------------------------------------------------------


ERROR_CODES = {
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    403: "AccessDenied",
    429: "Throttled",
}


@dataclass
class FaultRule:
    """One exact fault. The requests it matches: `method` ("*" for any), `key` (a glob on the object
    key), `operation` (an operation name such as put_object; "" for any). It lets the first `skip`
    matches through, then acts on the next `count` (None: on every later one): a delay of `delay_s`,
    then either an OSS error with HTTP `status`, or the connection reset after `reset_after` bytes
    of the response body (0: before any byte of it, with half the request body read).

    As a CLI flag: `METHOD KEYGLOB [op=NAME] [skip=N] [count=N|all] [delay=S] [status=N] [reset-after=N]`,
    e.g. `--fault "PUT */index.html count=all status=503"` or `--fault "* * skip=34 count=1 reset-after=0"`.
    """

    method: str = "*"
    key: str = "*"
    operation: str = ""
    skip: int = 0
    count: int | None = 1
    delay_s: float = 0.0
    status: int = 0
    reset_after: int | None = None
    matched: int = field(default=0, compare=False)

    @classmethod
    def parse(cls, text: str) -> FaultRule:
        words = text.split()
        if len(words) < 2:
            raise ValueError(f"a fault rule is METHOD KEYGLOB [name=value ...], got {text!r}")
        rule = cls(method=words[0].upper(), key=words[1])
        for word in words[2:]:
            name, _, value = word.partition("=")
            if name == "op":
                rule.operation = value
            elif name == "skip":
                rule.skip = int(value)
            elif name == "count":
                rule.count = None if value == "all" else int(value)
            elif name == "delay":
                rule.delay_s = float(value)
            elif name == "status":
                rule.status = int(value)
            elif name == "reset-after":
                rule.reset_after = int(value)
            else:
                raise ValueError(f"unknown fault rule setting {name!r} in {text!r}")
        if not rule.status and rule.reset_after is None and not rule.delay_s:
            raise ValueError(f"a fault rule needs status=, reset-after= or delay=: {text!r}")
        return rule

    def matches(self, method: str, key: str, operation: str) -> bool:
        return self.method in ("*", method) and fnmatch.fnmatchcase(key, self.key) and self.operation in ("", operation)


@dataclass
class Faults:
    """What the server does wrong on purpose, per request, for retry tests.

    error_rate: fraction answered 500/503; reset_rate: fraction whose connection is reset
    mid-body; corrupt_rate: fraction whose body is altered in flight (one byte flipped);
    latency_s: added before every request; only: operation names to apply faults to (empty: all);
    rules: exact faults (FaultRule), the first that fires wins.
    """

    error_rate: float = 0.0
    reset_rate: float = 0.0
    corrupt_rate: float = 0.0
    latency_s: float = 0.0
    only: frozenset[str] = frozenset()
    seed: int | None = None
    rules: list[FaultRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def fire(self, method: str, key: str, operation: str) -> FaultRule | None:
        """The rule that acts on this request, if any (counting the match)."""
        with self._lock:
            for rule in self.rules:
                if not rule.matches(method, key, operation):
                    continue
                rule.matched += 1
                nth = rule.matched - rule.skip
                if nth >= 1 and (rule.count is None or nth <= rule.count):
                    return rule
            return None

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate


@dataclass(frozen=True)
class Account:
    access_key_id: str
    access_key_secret: str
    security_token: str = ""  # set: the key is an STS key and requests must carry this token


# --- signatures --------------------------------------------------------------------------------


def _v4_encode(text: str, keep_slash: bool) -> str:
    safe = "-_.~/" if keep_slash else "-_.~"
    return quote(text, safe=safe)


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


@dataclass
class Request:
    method: str
    bucket: str
    key: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names

    def param(self, name: str) -> str | None:
        for k, v in self.query:
            if k == name:
                return v
        return None

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.query)


class Verifier:
    def __init__(self, accounts: Iterable[Account], region: str, now: Any = time.time) -> None:
        self.accounts = {a.access_key_id: a for a in accounts}
        self.region = region
        self.now = now

    def verify(self, req: Request) -> None:
        auth = req.headers.get("authorization", "")
        if not auth:
            raise OssError(403, "AccessDenied", "You have no right to access this object because of bucket acl.")
        if auth.startswith("OSS4-HMAC-SHA256 "):
            self._verify_v4(req, auth[len("OSS4-HMAC-SHA256 ") :])
        elif auth.startswith("OSS "):
            self._verify_v1(req, auth[4:])
        else:
            raise OssError(400, "InvalidArgument", "Authorization header is invalid.", "0002-00000003")

    def _account(self, key_id: str, req: Request) -> Account:
        account = self.accounts.get(key_id)
        if account is None:
            message = "The OSS Access Key Id you provided does not exist in our records."
            raise OssError(403, "InvalidAccessKeyId", message, "0002-00000002", OSSAccessKeyId=key_id)
        token = req.headers.get("x-oss-security-token", "")
        if account.security_token != token:
            raise OssError(403, "InvalidSecurityToken", "The security token you provided is invalid.", "0002-00000012")
        return account

    def _check_time(self, when: float | None) -> None:
        if when is None:
            raise OssError(403, "AccessDenied", "Invalid date in the request: the Date header is missing or bad.")
        if abs(self.now() - when) > MAX_SKEW_S:
            message = "The difference between the request time and the current time is too large."
            raise OssError(403, "RequestTimeTooSkewed", message, "0002-00000504")

    def _verify_v1(self, req: Request, rest: str) -> None:
        key_id, sep, signature = rest.rpartition(":")
        if not sep or not key_id:
            raise OssError(400, "InvalidArgument", "Authorization header is invalid.", "0002-00000003")
        account = self._account(key_id, req)
        date = req.headers.get("x-oss-date") or req.headers.get("date", "")
        parsed = email.utils.parsedate_tz(date) if date else None
        self._check_time(email.utils.mktime_tz(parsed) if parsed else None)
        oss_headers = sorted((k, v) for k, v in req.headers.items() if k.startswith("x-oss-"))
        resource = f"/{req.bucket}/{req.key}" if req.bucket else "/"
        subs = sorted((k, v) for k, v in req.query if k in V1_SUBRESOURCES)
        if subs:
            resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subs)
        string_to_sign = (
            "\n".join([req.method, req.headers.get("content-md5", ""), req.headers.get("content-type", ""), date, ""])
            + "".join(f"{k}:{v}\n" for k, v in oss_headers)
            + resource
        )
        expected = base64.b64encode(
            hmac.new(account.access_key_secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
        ).decode()
        if not hmac.compare_digest(expected, signature):
            raise _signature_mismatch(string_to_sign, signature, key_id)

    def _verify_v4(self, req: Request, rest: str) -> None:
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                fields[name] = value
        try:
            key_id, date, region, product, terminator = fields["Credential"].split("/")
            signature = fields["Signature"]
        except (KeyError, ValueError):
            raise OssError(400, "InvalidArgument", "Authorization header is invalid.", "0002-00000003") from None
        if product != "oss" or terminator != "aliyun_v4_request":
            raise OssError(400, "InvalidArgument", "Invalid credential scope in Authorization header.", "0002-00000204")
        if "AdditionalHeaders" in fields and not fields["AdditionalHeaders"]:
            raise OssError(400, "InvalidArgument", "AdditionalHeaders must not be empty.", "0002-00000209")
        account = self._account(key_id, req)
        stamp = req.headers.get("x-oss-date", "")
        try:
            when = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            when = None
        self._check_time(when)
        if stamp[:8] != date:
            raise OssError(403, "SignatureDoesNotMatch", "The credential date does not match x-oss-date.")
        if region != self.region:
            message = f"Invalid signing region {region!r}: this endpoint is {self.region!r}."
            raise OssError(400, "InvalidArgument", message, "0002-00000205")
        payload = req.headers.get("x-oss-content-sha256", "")
        if payload != "UNSIGNED-PAYLOAD":
            raise OssError(400, "InvalidArgument", "x-oss-content-sha256 must be UNSIGNED-PAYLOAD.", "0002-00000214")
        additional = [h.strip().lower() for h in fields.get("AdditionalHeaders", "").split(";") if h.strip()]
        signed = sorted(
            (k, v)
            for k, v in req.headers.items()
            if k.startswith("x-oss-") or k in ("content-type", "content-md5") or k in additional
        )
        uri = "/" + (f"{req.bucket}/" if req.bucket else "") + req.key
        query = sorted((_v4_encode(k, False), _v4_encode(v, False)) for k, v in req.query)
        canonical_request = "\n".join(
            [
                req.method,
                _v4_encode(uri, True),
                "&".join(f"{k}={v}" if v else k for k, v in query),
                "".join(f"{k}:{v}\n" for k, v in signed),
                ";".join(sorted(additional)),
                payload,
            ]
        )
        scope = f"{date}/{region}/oss/aliyun_v4_request"
        string_to_sign = "\n".join(
            ["OSS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
        )
        signing_key = ("aliyun_v4" + account.access_key_secret).encode()
        for part in (date, region, "oss", "aliyun_v4_request"):
            signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise _signature_mismatch(string_to_sign, signature, key_id, CanonicalRequest=canonical_request)


def _signature_mismatch(string_to_sign: str, provided: str, key_id: str, **extra: str) -> OssError:
    return OssError(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and "
        "signing method.",
        "0002-00000040",
        StringToSign=string_to_sign,
        SignatureProvided=provided,
        OSSAccessKeyId=key_id,
        **extra,
    )


# --- XML ---------------------------------------------------------------------------------------


def _xml(root: str, children: list[tuple[str, Any]]) -> bytes:
    """`<root>` with children; a child value that is a list of pairs nests."""

    def build(parent: ET.Element, items: list[tuple[str, Any]]) -> None:
        for name, value in items:
            node = ET.SubElement(parent, name)
            if isinstance(value, list):
                build(node, value)
            elif value is not None:
                node.text = str(value)

    element = ET.Element(root)
    build(element, children)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element, encoding="utf-8")


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
    ) -> None:
        super().__init__(address, OssHandler)
        self.store = Store(root)
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


class _Reset(Exception):
    """Fault injection decided to reset this connection."""


class OssHandler(BaseHTTPRequestHandler):
    server: OssServer
    protocol_version = "HTTP/1.1"
    server_version = "AliyunOSS"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write("oss_server: " + (format % args) + "\n")

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
        """Read part of the body (if any), then drop the connection with a TCP RST."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(max(1, length // 2))
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
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, err: OssError, method: str) -> None:
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
        if expected is not None and expected != base64.b64encode(digest).decode():
            raise OssError(400, "InvalidDigest", "The Content-MD5 you specified is not valid.", "0002-00000017")

    def _bucket(self, req: Request) -> None:
        if not req.bucket:
            raise OssError(400, "InvalidBucketName", "The specified bucket is not valid.")
        if not self.server.store.bucket_exists(req.bucket):
            raise _no_such_bucket(req.bucket)

    def _check_key(self, req: Request) -> None:
        if not req.key or len(req.key.encode()) > 1023 or req.key.startswith("/") or "\\" in req.key:
            raise OssError(400, "InvalidObjectName", "The specified object is not valid.", "0016-00000005")

    def _object_headers(self, meta: ObjectMeta) -> dict[str, str]:
        headers = {
            "Content-Type": meta.content_type,
            "ETag": meta.etag,
            "Last-Modified": _http_date(meta.last_modified),
            "x-oss-object-type": meta.object_type,
            "x-oss-hash-crc64ecma": str(meta.crc64),
            "x-oss-storage-class": "Standard",
            "Accept-Ranges": "bytes",
        }
        if meta.content_md5:
            headers["Content-MD5"] = meta.content_md5
        headers.update(meta.headers)
        return headers

    # object operations

    def op_put_object(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        self._check_key(req)
        acl = _object_acl(req.headers)
        path, size, digest, crc = self._receive(req.bucket, corrupt=corrupt)
        meta = ObjectMeta(
            key=req.key,
            size=size,
            etag=f'"{digest.hex().upper()}"',
            crc64=crc,
            content_type=req.headers.get("content-type") or "application/octet-stream",
            last_modified=time.time(),
            data_file="",
            content_md5=base64.b64encode(digest).decode(),
            headers=_stored_headers(req.headers),
            acl=acl,
        )
        forbid = req.headers.get("x-oss-forbid-overwrite", "").lower() == "true"
        try:
            self.server.store.commit(req.bucket, path, meta, forbid_overwrite=forbid)
        except BaseException:
            _remove(path)
            raise
        self._send(200, {"ETag": meta.etag, "x-oss-hash-crc64ecma": str(crc), "Content-MD5": meta.content_md5})

    def op_copy_object(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        self._check_key(req)
        acl = _object_acl(req.headers)
        self._read_small_body()
        source = unquote(req.headers["x-oss-copy-source"])
        src_bucket, _, src_key = source.lstrip("/").partition("/")
        if not self.server.store.bucket_exists(src_bucket):
            raise _no_such_bucket(src_bucket)
        src = self.server.store.get(src_bucket, src_key)
        path = self.server.store.temp_path(req.bucket)
        with self.server.store.open(src_bucket, src) as fin, open(path, "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK)
        replace = req.headers.get("x-oss-metadata-directive", "COPY").upper() == "REPLACE"
        meta = ObjectMeta(
            key=req.key,
            size=src.size,
            etag=src.etag,
            crc64=src.crc64,
            content_type=(req.headers.get("content-type") or src.content_type) if replace else src.content_type,
            last_modified=time.time(),
            data_file="",
            object_type=src.object_type,
            content_md5=src.content_md5,
            headers=_stored_headers(req.headers) if replace else dict(src.headers),
            acl=acl,
        )
        self.server.store.commit(req.bucket, path, meta)
        self._send_xml(
            "CopyObjectResult",
            [("ETag", meta.etag), ("LastModified", _iso(meta.last_modified))],
            {"x-oss-hash-crc64ecma": str(meta.crc64)},
        )

    def op_get_object_acl(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        meta = self.server.store.get(req.bucket, req.key)
        self._send_xml(
            "AccessControlPolicy",
            [("Owner", [("ID", OWNER_ID), ("DisplayName", OWNER_ID)]), ("AccessControlList", [("Grant", meta.acl)])],
        )

    def op_put_object_acl(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        if "x-oss-object-acl" not in req.headers:
            raise OssError(400, "InvalidArgument", "no such object access control exists", "0016-00000105")
        acl = _object_acl(req.headers)
        self._read_small_body()
        self.server.store.set_acl(req.bucket, req.key, acl)
        self._send(200)

    def op_get_object(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        meta = self.server.store.get(req.bucket, req.key)
        self._check_conditions(meta)
        headers = self._object_headers(meta)
        start, end = 0, meta.size - 1
        status = 200
        rng = _parse_range(self.headers.get("Range"), meta.size)
        if rng is not None:
            if rng == "unsatisfiable":
                if req.headers.get("x-oss-range-behavior", "").lower() == "standard":
                    raise OssError(416, "InvalidRange", "The requested range cannot be satisfied.", "0003-00000104")
            else:
                start, end = rng
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{meta.size}"
        for name in ("content-type", "cache-control", "content-disposition", "content-encoding", "expires"):
            override = req.param(f"response-{name}")
            if override:
                headers[name.title()] = override
        length = max(0, end - start + 1)
        with self.server.store.open(req.bucket, meta) as f:
            self._send(status, headers, length=length)
            if self.command == "HEAD":
                return
            f.seek(start)
            remaining, first, sent = length, True, 0
            while remaining > 0:
                chunk = f.read(min(remaining, CHUNK))
                if not chunk:
                    break
                if corrupt and first:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                first = False
                if self.reset_after is not None and sent + len(chunk) >= self.reset_after:
                    self.wfile.write(chunk[: self.reset_after - sent])
                    self.wfile.flush()
                    raise _Reset
                remaining -= len(chunk)
                sent += len(chunk)
                self.wfile.write(chunk)

    op_head_object = op_get_object

    def op_get_object_meta(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        meta = self.server.store.get(req.bucket, req.key)
        headers = {
            "ETag": meta.etag,
            "Last-Modified": _http_date(meta.last_modified),
            "x-oss-hash-crc64ecma": str(meta.crc64),
        }
        self._send(200, headers, length=meta.size)

    def _check_conditions(self, meta: ObjectMeta) -> None:
        if_match = self.headers.get("If-Match")
        if if_match is not None and if_match.strip('"').upper() != meta.etag.strip('"'):
            raise OssError(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
        since = self.headers.get("If-Unmodified-Since")
        if since:
            parsed = email.utils.parsedate_tz(since)
            if parsed and int(meta.last_modified) > email.utils.mktime_tz(parsed):
                raise OssError(
                    412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold."
                )
        if_none = self.headers.get("If-None-Match")
        if if_none is not None and if_none.strip('"').upper() == meta.etag.strip('"'):
            raise OssError(304, "NotModified", "Not Modified")

    def op_delete_object(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        self.server.store.delete(req.bucket, req.key)
        self._send(204)

    # multipart

    def op_initiate_multipart(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        self._check_key(req)
        self._read_small_body()
        upload_id = uuid.uuid4().hex
        folder = os.path.join(self.server.store.root, req.bucket, ".oss", "uploads", upload_id)
        os.makedirs(folder)
        info = {
            "key": req.key,
            "content_type": req.headers.get("content-type") or "application/octet-stream",
            "headers": _stored_headers(req.headers),
            "acl": _object_acl(req.headers),
        }
        with open(os.path.join(folder, "upload.json"), "w", encoding="utf-8") as f:
            json.dump(info, f)
        self._send_xml(
            "InitiateMultipartUploadResult", [("Bucket", req.bucket), ("Key", req.key), ("UploadId", upload_id)]
        )

    def _upload(self, req: Request) -> tuple[str, dict[str, Any]]:
        self._bucket(req)
        folder = self.server.store.upload_dir(req.bucket, req.param("uploadId") or "")
        with open(os.path.join(folder, "upload.json"), encoding="utf-8") as f:
            info = json.load(f)
        if info["key"] != req.key:
            raise OssError(404, "NoSuchUpload", "The specified upload does not exist.", "0042-00000002")
        return folder, info

    def op_upload_part(self, req: Request, *, corrupt: bool) -> None:
        folder, _ = self._upload(req)
        number = req.param("partNumber") or ""
        if not number.isdigit() or not 1 <= int(number) <= MAX_PART_NUMBER:
            raise OssError(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive.")
        path, size, digest, crc = self._receive(req.bucket, corrupt=corrupt)
        etag = f'"{digest.hex().upper()}"'
        part = {"number": int(number), "size": size, "etag": etag, "md5": digest.hex(), "crc64": crc}
        part["last_modified"] = time.time()
        try:
            os.rename(path, os.path.join(folder, f"{int(number)}.part"))
        except FileNotFoundError:  # aborted meanwhile
            _remove(path)
            raise OssError(404, "NoSuchUpload", "The specified upload does not exist.", "0042-00000002") from None
        tmp = self.server.store.temp_path(req.bucket)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(part, f)
        os.replace(tmp, os.path.join(folder, f"{int(number)}.json"))
        self._send(200, {"ETag": part["etag"], "x-oss-hash-crc64ecma": str(crc)})

    def _parts(self, folder: str) -> dict[int, dict[str, Any]]:
        parts = {}
        for name in os.listdir(folder):
            if name.endswith(".json") and name != "upload.json":
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    part = json.load(f)
                parts[part["number"]] = part
        return parts

    def op_list_parts(self, req: Request, *, corrupt: bool) -> None:
        folder, _ = self._upload(req)
        marker = int(req.param("part-number-marker") or 0)
        max_parts = min(int(req.param("max-parts") or 1000), 1000)
        parts = [p for n, p in sorted(self._parts(folder).items()) if n > marker]
        page, truncated = parts[:max_parts], len(parts) > max_parts
        children: list[tuple[str, Any]] = [
            ("Bucket", req.bucket),
            ("Key", req.key),
            ("UploadId", req.param("uploadId")),
            ("PartNumberMarker", marker),
            ("NextPartNumberMarker", page[-1]["number"] if page else ""),
            ("MaxParts", max_parts),
            ("IsTruncated", str(truncated).lower()),
        ]
        for p in page:
            children.append(
                (
                    "Part",
                    [
                        ("PartNumber", p["number"]),
                        ("LastModified", _iso(p["last_modified"])),
                        ("ETag", p["etag"]),
                        ("HashCrc64ecma", p["crc64"]),
                        ("Size", p["size"]),
                    ],
                )
            )
        self._send_xml("ListPartsResult", children)

    def op_complete_multipart(self, req: Request, *, corrupt: bool) -> None:
        folder, info = self._upload(req)
        body = self._read_small_body(limit=4 << 20)
        try:
            root = ET.fromstring(body)
            wanted = [(int(p.findtext("PartNumber", "")), p.findtext("ETag", "")) for p in root.iter("Part")]
        except (ET.ParseError, ValueError):
            raise OssError(400, "MalformedXML", "The XML you provided was not well-formed.") from None
        if not wanted:
            raise OssError(400, "MalformedXML", "The XML you provided was not well-formed: no parts.")
        numbers = [n for n, _ in wanted]
        if numbers != sorted(set(numbers)):
            raise OssError(400, "InvalidPartOrder", "The list of parts was not in ascending order.", "0042-00000209")
        parts = self._parts(folder)
        chosen = []
        for number, etag in wanted:
            part = parts.get(number)
            if part is None or etag.strip().strip('"').upper() != part["etag"].strip('"'):
                message = "One or more of the specified parts could not be found or the specified entity tag "
                message += "might not have matched the part's entity tag."
                raise OssError(400, "InvalidPart", message, "0042-00000208")
            chosen.append(part)
        for part in chosen[:-1]:
            if part["size"] < MIN_PART_SIZE:
                message = "Your proposed upload is smaller than the minimum allowed size."
                raise OssError(400, "EntityTooSmall", message, "0042-00000213")
        path = self.server.store.temp_path(req.bucket)
        crc, size = 0, 0
        with open(path, "wb") as out:
            for part in chosen:
                with open(os.path.join(folder, f"{part['number']}.part"), "rb") as f:
                    shutil.copyfileobj(f, out, CHUNK)
                crc = crc64_combine(crc, part["crc64"], part["size"])
                size += part["size"]
        combined = hashlib.md5(b"".join(bytes.fromhex(p["md5"]) for p in chosen)).hexdigest().upper()
        meta = ObjectMeta(
            key=req.key,
            size=size,
            etag=f'"{combined}-{len(chosen)}"',
            crc64=crc,
            content_type=info["content_type"],
            last_modified=time.time(),
            data_file="",
            object_type="Multipart",
            headers=info["headers"],
            acl=info.get("acl", "default"),
        )
        self.server.store.commit(req.bucket, path, meta)
        shutil.rmtree(folder, ignore_errors=True)
        location = f"{self.server.endpoint}/{req.bucket}/{quote(req.key)}"
        self._send_xml(
            "CompleteMultipartUploadResult",
            [("Location", location), ("Bucket", req.bucket), ("Key", req.key), ("ETag", meta.etag)],
            {"ETag": meta.etag, "x-oss-hash-crc64ecma": str(crc)},
        )

    def op_abort_multipart(self, req: Request, *, corrupt: bool) -> None:
        folder, _ = self._upload(req)
        shutil.rmtree(folder, ignore_errors=True)
        self._send(204)

    # bucket operations

    def op_put_bucket(self, req: Request, *, corrupt: bool) -> None:
        self._read_small_body()
        self.server.store.create_bucket(req.bucket)
        self._send(200, {"Location": f"/{req.bucket}"})

    def op_delete_bucket(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        if self.server.store.objects(req.bucket):
            raise OssError(409, "BucketNotEmpty", "The bucket you tried to delete is not empty.")
        shutil.rmtree(os.path.join(self.server.store.root, req.bucket))
        with self.server.store._lock:
            self.server.store._index.pop(req.bucket, None)
        self._send(204)

    def op_delete_multiple(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        if "content-md5" not in req.headers:
            raise OssError(400, "InvalidDigest", "Content-MD5 is required for DeleteMultipleObjects.")
        body = self._read_small_body(limit=2 << 20)
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            raise OssError(400, "MalformedXML", "The XML you provided was not well-formed.") from None
        quiet = (root.findtext("Quiet") or "false").lower() == "true"
        keys = [o.findtext("Key") or "" for o in root.iter("Object")]
        if not keys or len(keys) > MAX_DELETE_KEYS:
            raise OssError(400, "MalformedXML", f"A delete request names 1 to {MAX_DELETE_KEYS} objects.")
        url = req.param("encoding-type") == "url"
        children: list[tuple[str, Any]] = [("EncodingType", "url")] if url else []
        for key in keys:
            self.server.store.delete(req.bucket, key)
            if not quiet:
                children.append(("Deleted", [("Key", _encode(key, url))]))
        self._send_xml("DeleteResult", children)

    def op_list_objects(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        v2 = req.param("list-type") == "2"
        prefix = req.param("prefix") or ""
        delimiter = req.param("delimiter") or ""
        url = req.param("encoding-type") == "url"
        raw_max = req.param("max-keys") or "100"
        if not raw_max.isdigit() or not 0 < int(raw_max) <= 1000:
            raise OssError(400, "InvalidArgument", "max-keys must be an integer from 1 to 1000.")
        max_keys = int(raw_max)
        if v2:
            token = req.param("continuation-token") or ""
            try:
                marker = base64.urlsafe_b64decode(token.encode()).decode() if token else ""
            except (ValueError, UnicodeDecodeError):
                raise OssError(400, "InvalidArgument", "The continuation token is not valid.") from None
            marker = max(marker, req.param("start-after") or "", key=lambda s: s.encode())
        else:
            marker = req.param("marker") or ""
        contents, prefixes, truncated, last = _list_page(
            self.server.store.sorted_keys(req.bucket), prefix, delimiter, marker, max_keys
        )
        objects = self.server.store.objects(req.bucket)
        children: list[tuple[str, Any]] = [
            ("Name", req.bucket),
            ("Prefix", _encode(prefix, url)),
            ("MaxKeys", max_keys),
            ("Delimiter", _encode(delimiter, url)),
        ]
        if url:
            children.append(("EncodingType", "url"))
        children.append(("IsTruncated", str(truncated).lower()))
        if v2:
            children.append(("KeyCount", len(contents) + len(prefixes)))
            if req.param("continuation-token"):
                children.append(("ContinuationToken", req.param("continuation-token")))
            if req.param("start-after"):
                children.append(("StartAfter", _encode(req.param("start-after") or "", url)))
            if truncated:
                children.append(("NextContinuationToken", base64.urlsafe_b64encode(last.encode()).decode()))
        else:
            children.insert(2, ("Marker", _encode(marker, url)))
            if truncated:
                children.append(("NextMarker", _encode(last, url)))
        owner = not v2 or req.param("fetch-owner") == "true"
        for key in contents:
            meta = objects.get(key)
            if meta is None:  # deleted while listing
                continue
            entry: list[tuple[str, Any]] = [
                ("Key", _encode(key, url)),
                ("LastModified", _iso(meta.last_modified)),
                ("ETag", meta.etag),
                ("Type", meta.object_type),
                ("Size", meta.size),
                ("StorageClass", "Standard"),
            ]
            if owner:
                entry.append(("Owner", [("ID", "0"), ("DisplayName", "0")]))
            children.append(("Contents", entry))
        for p in prefixes:
            children.append(("CommonPrefixes", [("Prefix", _encode(p, url))]))
        self._send_xml("ListBucketResult", children)

    # the website face

    def _serve_site(self, method: str, rest: str) -> None:
        bucket, _, raw = rest.partition("/")
        path = unquote(raw)
        store = self.server.store
        if not store.bucket_exists(bucket):
            self._send_text(404, "no such bucket\n")
            return
        key = path + "index.html" if path == "" or path.endswith("/") else path
        objects = store.objects(bucket)
        meta = objects.get(key)
        if meta is None and f"{key}/index.html" in objects:
            self._send(301, {"Location": f"{SITE_PREFIX}{bucket}/{raw}/"})
            return
        if meta is None:
            self._send_text(404, f"404 Not Found: {path}\n")
            return
        if meta.acl == "private":  # the website serves the bucket as public-read; this object is not
            denied = OssError(403, "AccessDenied", "You have no right to access this object because of object acl.")
            self._send_error(denied, method)
            return
        headers = {
            "Content-Type": meta.content_type,
            "ETag": meta.etag,
            "Last-Modified": _http_date(meta.last_modified),
        }
        headers.update(meta.headers)
        if self.headers.get("If-None-Match", "").strip() == meta.etag:
            self._send(304, headers, length=0)
            return
        with store.open(bucket, meta) as f:
            self._send(200, headers, length=meta.size)
            if method == "GET":
                shutil.copyfileobj(f, self.wfile, CHUNK)

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, {"Content-Type": "text/plain; charset=utf-8"}, text.encode())


def _operation(req: Request) -> str:
    """The OSS API operation a request names. Routed on parameter names, never on their order."""
    m = req.method
    if not req.key:
        if m == "PUT":
            return "put_bucket"
        if m == "DELETE":
            return "delete_bucket"
        if m == "POST" and req.has("delete"):
            return "delete_multiple"
        if m == "GET":
            return "list_objects"
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


def _list_page(
    keys: list[str], prefix: str, delimiter: str, marker: str, max_keys: int
) -> tuple[list[str], list[str], bool, str]:
    contents: list[str] = []
    prefixes: list[str] = []
    last = ""
    marker_bytes = marker.encode()
    for key in keys:
        if not key.startswith(prefix) or key.encode() <= marker_bytes:
            continue
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                if common == marker or (prefixes and prefixes[-1] == common):
                    continue
                if len(contents) + len(prefixes) == max_keys:
                    return contents, prefixes, True, last
                prefixes.append(common)
                last = common
                continue
        if len(contents) + len(prefixes) == max_keys:
            return contents, prefixes, True, last
        contents.append(key)
        last = key
    return contents, prefixes, False, last


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end) inclusive; "unsatisfiable"; or None for no (or an ignored, malformed) Range."""
    if not header or not header.startswith("bytes="):
        return None
    first = header[len("bytes=") :].split(",")[0].strip()
    start_s, sep, end_s = first.partition("-")
    if not sep:
        return None
    try:
        if not start_s:
            n = int(end_s)
            if n <= 0:
                return None
            return (max(0, size - n), size - 1) if size else "unsatisfiable"
        start = int(start_s)
        end = int(end_s) if end_s else size - 1
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, min(end, size - 1)


def _stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    kept = {}
    for name, value in headers.items():
        if name in STORED_HEADERS:
            kept[name.title()] = value
        elif name.startswith("x-oss-meta-"):
            kept[name] = value
    return kept


def _encode(text: str, url: bool) -> str:
    return quote(text, safe="/") if url else text


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- running it ------------------------------------------------------------------------------


class LocalOss:
    """Run the server in a background thread on a free port (for tests and the demo).

    with LocalOss(root, buckets=["src"], accounts=[Account("id", "secret")]) as oss:
        oss.endpoint  # http://127.0.0.1:PORT
    """

    def __init__(
        self,
        root: str,
        *,
        buckets: Iterable[str] = (),
        accounts: Iterable[Account] = (),
        region: str = "cn-hangzhou",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
    ) -> None:
        self.server = OssServer((host, port), root, accounts, region=region, faults=faults)
        for bucket in buckets:
            self.server.store.create_bucket(bucket)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def site_url(self, bucket: str, path: str = "") -> str:
        return f"{self.endpoint}{SITE_PREFIX}{bucket}/{path}"

    def __enter__(self) -> LocalOss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="A strict OSS-compatible server on local disk.")
    parser.add_argument("--root", required=True, help="folder holding one folder per bucket")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--region", default="cn-hangzhou", help="the region V4 signatures must name")
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket (repeatable)")
    parser.add_argument("--access-key-id", default=os.environ.get("OSS_SERVER_ACCESS_KEY_ID", "test-key-id"))
    parser.add_argument("--access-key-secret", default=os.environ.get("OSS_SERVER_ACCESS_KEY_SECRET", "test-secret"))
    parser.add_argument("--security-token", default=os.environ.get("OSS_SERVER_SECURITY_TOKEN", ""))
    parser.add_argument("--latency-ms", type=float, default=0, help="added to every request")
    parser.add_argument("--error-rate", type=float, default=0, help="fraction of requests answered 500/503")
    parser.add_argument("--reset-rate", type=float, default=0, help="fraction of connections reset mid-body")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        help="an exact fault: 'METHOD KEYGLOB [op=NAME] [skip=N] [count=N|all] [delay=S] [status=N] "
        "[reset-after=N]' (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv[1:])
    account = Account(args.access_key_id, args.access_key_secret, args.security_token)
    try:
        rules = [FaultRule.parse(text) for text in args.fault]
    except ValueError as exc:
        parser.error(str(exc))
    faults = Faults(
        error_rate=args.error_rate, reset_rate=args.reset_rate, latency_s=args.latency_ms / 1000, rules=rules
    )
    server = OssServer(
        (args.host, args.port), args.root, [account], region=args.region, faults=faults, quiet=not args.verbose
    )
    for bucket in args.bucket:
        server.store.create_bucket(bucket)
    print(f"oss_server listening on {server.endpoint} (root {server.store.root})", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
