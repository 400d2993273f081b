"""All of fcbuild's OSS traffic. The only module that imports oss2.

One `OssClient` per request, from that request's credentials (they rotate: nothing is
cached across requests). V4 signatures, the STS token when there is one, and FC's internal
endpoint by default. Every transfer is CRC64-checked; transient failures are retried with
backoff and jitter; OSS failures become fcbuild's error types with bucket, key, OSS code and
OSS request id in the message, never a credential.
"""

from __future__ import annotations

import base64
import concurrent.futures
import errno
import hashlib
import http.client
import importlib
import json
import logging
import os
import random
import sys
import threading
import time
import types
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit


def _without_client_side_encryption() -> None:
    """Keep oss2 from loading its client-side encryption, which fcbuild never uses.

    `import oss2` imports `oss2.crypto` and `oss2.crypto_bucket` (which pull in aliyunsdkcore,
    aliyunsdkkms, cryptography and pycryptodome's RSA), and `oss2.utils` imports pycryptodome's
    AES, Counter and Random for its encrypting file adapters. Together they are most of oss2's
    import time and ~35 MB of the frozen bundle. Placeholders stand in for those modules: every
    name they export is a class that refuses to be instantiated, so oss2's own imports and
    isinstance checks work and any use of encryption fails loudly.
    """

    message = "oss2 client-side encryption is not loaded in fcbuild"

    class _UnavailableType(type):
        def __getattr__(cls, attr: str) -> Any:  # e.g. AES.new, Random.new
            raise NotImplementedError(message)

    class _Unavailable(metaclass=_UnavailableType):
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise NotImplementedError(message)

    placeholders = ("oss2.crypto", "oss2.crypto_bucket", "Crypto", "Crypto.Cipher", "Crypto.Util")
    for name in placeholders:
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = []  # a package, so `from Crypto.Cipher import AES` resolves through __getattr__
            module.__getattr__ = lambda attr: type(attr, (_Unavailable,), {})  # type: ignore[method-assign]
            sys.modules[name] = module


_without_client_side_encryption()
# The binary leaves out requests' character detector (charset_normalizer: half a MB unpacked at every
# start); requests then decodes text as UTF-8, which fcbuild never asks of it, and warns at import.
warnings.filterwarnings("ignore", message="Unable to find acceptable character detection dependency")

import crcmod  # noqa: E402
import oss2  # noqa: E402
import oss2.utils  # noqa: E402
import requests  # noqa: E402
import urllib3  # noqa: E402
from oss2.credentials import StaticCredentialsProvider  # noqa: E402
from oss2.models import PartInfo  # noqa: E402
from oss2.utils import Crc64, SizedFileAdapter  # noqa: E402

from context import Credentials, FcContext, redact  # noqa: E402
from errors import (  # noqa: E402
    AccessDenied,
    DiskFull,
    DownloadFailed,
    FcBuildError,
    InvalidRequest,
    SourceNotFound,
    UploadFailed,
)
from oss_names import check_region  # noqa: E402
from settings import PipelineSettings  # noqa: E402

logger = logging.getLogger(__name__)
T = TypeVar("T")

# oss2 computes CRC64 over every byte with crcmod; its pure-Python fallback is ~35x slower.
CRC_EXTENSION = bool(importlib.import_module("crcmod.crcmod")._usingExtension)
PROGRESS_EVERY_S = 2.0
HDR_OBJECT_ACL = "x-oss-object-acl"


def _install_cached_crc64() -> None:
    """Make oss2's per-request `Crc64()` cheap.

    oss2 builds a new `crcmod.Crc` for every request body, and crcmod computes its 256-entry
    table in pure Python each time (~0.5 ms a request: a quarter of a small PUT's CPU). A copy
    of a prepared instance (`Crc.new()`) has the same table and state.
    """
    original_init = oss2.utils.Crc64.__init__
    prepared: dict[int, tuple[crcmod.Crc, Callable[..., int]]] = {}
    lock = threading.Lock()

    def init(self: Any, init_crc: int = 0) -> None:
        with lock:
            template = prepared.get(init_crc)
            if template is None:
                original_init(self, init_crc)
                prepared[init_crc] = (self.crc64, self.crc64_combineFun)
                return
        self.crc64 = template[0].new()
        self.crc64_combineFun = template[1]

    oss2.utils.Crc64.__init__ = init


_install_cached_crc64()
CHUNK = 1 << 20


@dataclass(frozen=True)
class PutItem:
    """One file to upload: where from, where to, and its headers (Content-Type, Cache-Control,
    x-oss-meta-*, x-oss-object-acl). `md5` (hex) is sent as Content-MD5 below the multipart size."""

    key: str
    path: str
    size: int
    md5: str
    headers: Mapping[str, str]


class Concurrency:
    """How many requests of a batch are in flight. It starts at `start` and rises by half while the
    rate of finished requests keeps growing by more than RISE (each request mostly waits on the
    network: more in flight, more done), and stays where the rate stopped growing (the link or the
    CPU is the limit), never above `ceiling`. A window is short (two rounds of requests), so one that
    did not grow is measured again before the limit settles, and no window is shorter than WINDOW_S:
    a pause of the process or one slow answer does not end the rise. Use as a context manager around
    one request."""

    RISE = 1.15
    MISSES = 2  # windows in a row without growth before the limit settles
    WINDOW_S = 0.05

    def __init__(self, start: int, ceiling: int) -> None:
        self.limit = max(1, start)
        self.ceiling = max(self.limit, ceiling)
        self._cond = threading.Condition()
        self._in_flight = 0
        self._done = 0
        self._since = time.monotonic()
        self._best = 0.0
        self._misses = 0
        self._settled = self.limit >= self.ceiling

    def __enter__(self) -> Concurrency:
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._in_flight -= 1
            self._done += 1
            freed = 1
            now = time.monotonic()
            # a window: two rounds at this limit, and at least WINDOW_S
            if not self._settled and self._done >= 2 * self.limit and now - self._since >= self.WINDOW_S:
                rate = self._done / (now - self._since)
                if rate > self._best * self.RISE:
                    self._best, self._misses = rate, 0
                    raised = min(self.ceiling, self.limit + max(1, self.limit // 2))
                    freed += raised - self.limit
                    self.limit = raised
                    self._settled = self.limit >= self.ceiling
                else:
                    self._misses += 1
                    self._settled = self._misses >= self.MISSES
                self._done, self._since = 0, now
            # one waiter per slot freed: waking them all (up to the ceiling) made each finish cost
            # dozens of wake-ups that found no slot and slept again
            self._cond.notify(freed)


class PartialTransfer(UploadFailed):
    """A batch upload failed part way. `started`: every key a request was sent for (some may have
    landed although their answer was lost); `done`: the keys confirmed, with their ETags."""

    def __init__(self, message: str, *, started: frozenset[str], done: dict[str, str], cause: BaseException) -> None:
        super().__init__(message)
        self.started = started
        self.done = done
        self.cause = cause


@dataclass(frozen=True)
class Downloaded:
    size: int
    etag: str
    crc64: str  # decimal, as OSS writes it in x-oss-hash-crc64ecma


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


@dataclass(frozen=True)
class ObjectHead:
    size: int
    etag: str
    meta: Mapping[str, str]  # the object's x-oss-meta-* headers, by their name without that prefix


@dataclass
class TransferReport:
    uploaded: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0
    retries: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "uploaded": self.uploaded,
            "skipped": self.skipped,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "retries": self.retries,
        }


class _Progress:
    """Logs files and bytes done of the total, at most every PROGRESS_EVERY_S seconds."""

    def __init__(self, log: Any, verb: str, files: int, total_bytes: int) -> None:
        self.log, self.verb, self.files, self.total = log, verb, files, total_bytes
        self.done_files = self.done_bytes = 0
        self._lock = threading.Lock()
        self._last = time.monotonic()

    def add(self, nbytes: int, *, file_done: bool = False) -> None:
        with self._lock:
            self.done_bytes += nbytes
            self.done_files += file_done
            now = time.monotonic()
            if now - self._last < PROGRESS_EVERY_S:
                return
            self._last = now
        self.log.info(
            "%s %d/%d files, %.1f/%.1f MiB",
            self.verb,
            self.done_files,
            self.files,
            self.done_bytes / 2**20,
            self.total / 2**20,
        )


class _Session(oss2.Session):
    """oss2's Session, sending each request straight through requests' connection-pool adapter.

    requests' `Session.request` merges session settings, builds a cookie jar, looks for redirects
    and dispatches hooks on every call: about a sixth of the client's CPU per small PUT, none of it
    useful to OSS (no cookies, no redirects: a signed request is valid for its own host only; the
    proxies come from the client, read once). What stays is requests' URL, header and body
    preparation and its adapter, so oss2 still gets a `requests.Response` and requests' exceptions."""

    def __init__(self, pool_size: int, proxies: Mapping[str, str]) -> None:
        super().__init__(pool_size=pool_size)
        self.proxies = dict(proxies)
        self._defaults = requests.utils.default_headers()
        self._adapters = {scheme: self.session.get_adapter(scheme + "://") for scheme in ("http", "https")}

    def do_request(self, req: oss2.http.Request, timeout: Any) -> oss2.http.Response:
        headers = requests.structures.CaseInsensitiveDict(self._defaults)
        headers.update(req.headers)
        for name in [name for name, value in headers.items() if value is None]:  # oss2 turning a default off
            del headers[name]
        prepared = requests.PreparedRequest()
        prepared.prepare_method(req.method)
        prepared.prepare_url(req.url, req.params)
        prepared.prepare_headers(headers)
        prepared.prepare_body(req.data, None)
        prepared.prepare_hooks({})
        proxies = {**self.proxies, **(req.proxies or {})}
        try:
            adapter = self._adapters[prepared.url.partition(":")[0].lower()]
            response = adapter.send(prepared, stream=True, timeout=timeout, verify=True, proxies=proxies)
        except requests.RequestException as exc:
            raise oss2.exceptions.RequestError(exc) from exc
        return oss2.http.Response(response)


class OssClient:
    """OSS I/O for one request. Thread-safe: transfers run on its own thread pools."""

    def __init__(
        self,
        credentials: Credentials,
        region: str,
        endpoint: str,
        *,
        concurrency: int = 16,
        max_concurrency: int = 64,
        part_size: int = 8 * 2**20,
        multipart_threshold: int = 16 * 2**20,
        retries: int = 5,
        log: Any = logger,
    ) -> None:
        if not region:
            raise InvalidRequest("region: unknown (FC sends x-fc-region; set FCBUILD_OSS_REGION to run elsewhere)")
        provider = StaticCredentialsProvider(
            credentials.access_key_id, credentials.access_key_secret, credentials.security_token or None
        )
        self._auth = oss2.ProviderAuthV4(provider)
        self._secrets = credentials.secrets()
        self.region = region
        self.endpoint = endpoint
        self.concurrency = concurrency  # requests in flight at first, and for parts and downloads
        self.max_concurrency = max(concurrency, max_concurrency)  # what a batch of small PUTs may rise to
        self.part_size = part_size
        self.multipart_threshold = multipart_threshold
        self.retries = retries
        self.log = log
        # a connection for every request that may be in flight: none is closed for want of a slot
        self._session = _Session(self.max_concurrency + concurrency + 4, _proxies_for(endpoint))
        self._buckets: dict[str, oss2.Bucket] = {}
        self._lock = threading.Lock()
        self.retry_count = 0
        self.peak_concurrency = 0  # the most small PUTs a batch had in flight at once
        self.deadline: float | None = None  # time.monotonic() after which no retry starts

    @classmethod
    def for_request(cls, ctx: FcContext, settings: PipelineSettings, log: Any = logger) -> OssClient:
        if ctx.credentials is None or not ctx.credentials.access_key_id:
            raise AccessDenied(
                "no credentials: give the function a role (FC passes its STS credentials in x-fc-* headers "
                "or ALIBABA_CLOUD_* variables)"
            )
        region = ctx.region or settings.oss_region
        if region:
            check_region(region, "region (x-fc-region, else FCBUILD_OSS_REGION)")
        endpoint = settings.oss_endpoint or f"https://oss-{region}-internal.aliyuncs.com"
        client = cls(
            ctx.credentials,
            region,
            endpoint,
            concurrency=settings.upload_concurrency,
            max_concurrency=settings.upload_max_concurrency,
            part_size=settings.part_size,
            multipart_threshold=settings.multipart_threshold,
            retries=settings.oss_retries,
            log=log,
        )
        client.deadline = ctx.deadline
        return client

    def bucket(self, name: str) -> oss2.Bucket:
        with self._lock:
            bucket = self._buckets.get(name)
            if bucket is None:
                bucket = oss2.Bucket(
                    self._auth, self.endpoint, name, session=self._session, region=self.region, connect_timeout=30
                )
                self._buckets[name] = bucket
            return bucket

    # --- retries and error translation -----------------------------------------------------

    def _attempt(self, what: str, fn: Callable[[], T], progress: Callable[[], int] | None = None) -> T:
        """Run `fn`, retrying transient failures with exponential backoff and full jitter.

        With `progress` (bytes transferred so far), a failure after the transfer advanced starts the
        count of retries again: a long download over a flaky link finishes as long as each try gets
        further. No retry starts past the client's deadline."""
        delay = 0.2
        failures = 0
        mark = progress() if progress else 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if progress is not None and progress() > mark:
                    mark, failures, delay = progress(), 0, 0.2
                failures += 1
                if not _is_transient(exc) or failures > self.retries:
                    raise
                if self.deadline is not None and time.monotonic() + delay >= self.deadline:
                    self.log.warning("%s: %s; no time left to retry", what, self._describe(exc))
                    raise
                with self._lock:
                    self.retry_count += 1
                self.log.warning("%s: %s; retrying (%d/%d)", what, self._describe(exc), failures, self.retries)
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 5.0)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, oss2.exceptions.OssError):
            if exc.status < 0:  # oss2's client-side errors (connection, CRC mismatch) carry status -1/-2/-3
                text = f"{type(exc).__name__}: {exc.body or exc.message}"
            else:
                text = f"{exc.code or 'HTTP ' + str(exc.status)}, HTTP {exc.status}, request id {exc.request_id or '-'}"
        else:
            text = f"{type(exc).__name__}: {exc}"
        return redact(str(text), self._secrets)[:500]

    def _translate(
        self,
        exc: BaseException,
        bucket: str,
        key: str,
        *,
        failure: type[FcBuildError],
        not_found: type[FcBuildError] | None = None,
    ) -> FcBuildError:
        where = f"oss://{bucket}/{key}"
        if isinstance(exc, FcBuildError):
            return exc
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return DiskFull(f"{where}: the local disk is full ({exc.filename or 'writing the download'})")
        if isinstance(exc, oss2.exceptions.OssError) and exc.status >= 0:
            detail = f"{exc.code or 'HTTP ' + str(exc.status)}, request id {exc.request_id or '-'}"
            message = redact(exc.message or "", self._secrets)
            if exc.status == 404 and not_found is not None:
                return not_found(f"{where} ({detail}): {message}")
            if exc.status == 403:
                return AccessDenied(f"{where} ({detail}): {message}")
            return failure(f"{where} ({detail}): {message}")
        return failure(f"{where}: {self._describe(exc)}")

    # --- small objects --------------------------------------------------------------------

    def get_json(self, bucket: str, key: str) -> Any | None:
        """The JSON document at bucket/key, or None when there is none."""

        def get() -> bytes:
            result = self.bucket(bucket).get_object(key)
            data = result.read()
            _check_crc(result)
            return data

        try:
            data = self._attempt(f"get {bucket}/{key}", get)
        except oss2.exceptions.NoSuchKey:
            return None
        except Exception as exc:
            raise self._translate(exc, bucket, key, failure=DownloadFailed, not_found=SourceNotFound) from exc
        try:
            return json.loads(data)
        except ValueError:
            self.log.warning("oss://%s/%s is not valid JSON; treated as absent", bucket, key)
            return None

    def put_json(
        self,
        bucket: str,
        key: str,
        doc: Any,
        *,
        cache_control: str = "no-cache",
        private: bool = False,
        compact: bool = False,
    ) -> None:
        """`compact`: no indentation (a large document such as a manifest of thousands of files)."""
        if compact:
            data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        else:
            data = json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=1).encode()
        self.put_bytes(
            bucket,
            key,
            data,
            content_type="application/json; charset=utf-8",
            cache_control=cache_control,
            private=private,
        )

    def put_bytes(
        self, bucket: str, key: str, data: bytes, *, content_type: str, cache_control: str = "", private: bool = False
    ) -> None:
        """Upload `data`. `private`: readable only with credentials, even in a public-read bucket."""
        headers = {"Content-Type": content_type, "Content-MD5": _b64md5(data)}
        if cache_control:
            headers["Cache-Control"] = cache_control
        if private:
            headers[HDR_OBJECT_ACL] = "private"
        try:
            self._attempt(f"put {bucket}/{key}", lambda: self.bucket(bucket).put_object(key, data, headers=headers))
        except Exception as exc:
            raise self._translate(exc, bucket, key, failure=UploadFailed) from exc

    def object_exists(self, bucket: str, key: str) -> bool:
        try:
            return bool(self._attempt(f"head {bucket}/{key}", lambda: self.bucket(bucket).object_exists(key)))
        except Exception as exc:
            raise self._translate(exc, bucket, key, failure=DownloadFailed, not_found=SourceNotFound) from exc

    def put_file(
        self,
        bucket: str,
        key: str,
        path: str,
        *,
        content_type: str,
        cache_control: str = "no-cache",
        private: bool = False,
        meta: Mapping[str, str] | None = None,
    ) -> int:
        """Upload one local file (multipart when large, CRC64-checked), with `meta` as its
        x-oss-meta-* headers. Returns its size."""
        size = os.path.getsize(path)
        md5 = ""
        if size < self.multipart_threshold:  # sent as Content-MD5; multipart parts are checked by CRC64
            digest = hashlib.md5()
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    digest.update(chunk)
            md5 = digest.hexdigest()
        headers = {"Content-Type": content_type, "Cache-Control": cache_control}
        if private:
            headers[HDR_OBJECT_ACL] = "private"
        headers.update({f"x-oss-meta-{name}": value for name, value in (meta or {}).items()})
        item = PutItem(key, path, size, md5, headers)
        progress = _Progress(self.log, "uploaded", 1, size)
        try:
            with concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="oss-part") as parts:
                self._upload_one(bucket, item, parts, progress)
        except Exception as exc:
            raise self._translate(exc, bucket, key, failure=UploadFailed) from exc
        return size

    # --- listing and deleting -------------------------------------------------------------

    def list_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        token = ""
        while True:
            try:
                page = self._attempt(
                    f"list {bucket}/{prefix}",
                    lambda t=token: self.bucket(bucket).list_objects_v2(
                        prefix=prefix, continuation_token=t, max_keys=1000
                    ),
                )
            except Exception as exc:
                raise self._translate(exc, bucket, prefix, failure=DownloadFailed, not_found=SourceNotFound) from exc
            for obj in page.object_list:
                yield ObjectInfo(obj.key, obj.size, obj.etag)
            if not page.is_truncated:
                return
            token = page.next_continuation_token

    def delete_objects(self, bucket: str, keys: Sequence[str]) -> int:
        """Delete keys in batches of 1000 (OSS's limit per request). Returns how many were named."""
        for start in range(0, len(keys), 1000):
            batch = list(keys[start : start + 1000])
            try:
                self._attempt(
                    f"delete {len(batch)} objects", lambda b=batch: self.bucket(bucket).batch_delete_objects(b)
                )
            except Exception as exc:
                raise self._translate(exc, bucket, batch[0], failure=UploadFailed) from exc
        return len(keys)

    # --- downloads ------------------------------------------------------------------------

    def download_file(self, bucket: str, key: str, dest: str, *, max_bytes: int | None = None) -> int:
        """`download`, returning the size."""
        return self.download(bucket, key, dest, max_bytes=max_bytes).size

    def download(self, bucket: str, key: str, dest: str, *, max_bytes: int | None = None) -> Downloaded:
        """Stream bucket/key to `dest` with bounded memory; resume from the last byte on a dropped
        connection (Range plus If-Match, so a replaced object is not stitched); verify the CRC64
        of the whole file against the object's. Returns its size, ETag and CRC64."""
        try:
            return self._download(bucket, key, dest, max_bytes)
        except Exception as exc:
            raise self._translate(exc, bucket, key, failure=DownloadFailed, not_found=SourceNotFound) from exc

    def _download(self, bucket: str, key: str, dest: str, max_bytes: int | None) -> Downloaded:
        b = self.bucket(bucket)
        meta = self._attempt(f"head {bucket}/{key}", lambda: b.get_object_meta(key))
        size, etag = meta.content_length, meta.etag
        server_crc = int(meta.headers.get("x-oss-hash-crc64ecma", "0") or 0)
        if max_bytes is not None and size > max_bytes:
            raise DownloadFailed(f"oss://{bucket}/{key}: {size} bytes is over the limit of {max_bytes}")
        progress = _Progress(self.log, "downloaded", 1, size)
        for whole_attempt in range(2):  # a CRC mismatch over the whole file: fetch it all once more
            with open(dest, "wb") as out:
                got = _Received(out)
                if size:
                    self._attempt(
                        f"get {bucket}/{key}",
                        lambda got=got: got.fetch(b, key, etag, size, progress),
                        progress=lambda got=got: got.offset,
                    )
            if not server_crc or got.crc.crc == server_crc:
                progress.add(0, file_done=True)
                return Downloaded(size, etag, str(got.crc.crc))
            self.log.warning("oss://%s/%s: CRC64 mismatch after download (attempt %d)", bucket, key, whole_attempt + 1)
        raise oss2.exceptions.InconsistentError(f"CRC64 of the downloaded file {got.crc.crc} != {server_crc} from OSS")

    def head(self, bucket: str, key: str) -> ObjectHead:
        """An object's size, ETag and user metadata (one HEAD)."""
        try:
            meta = self._attempt(f"head {bucket}/{key}", lambda: self.bucket(bucket).head_object(key))
        except Exception as exc:
            raise self._translate(exc, bucket, key, failure=DownloadFailed, not_found=SourceNotFound) from exc
        user = {
            k.lower()[len("x-oss-meta-") :]: v for k, v in meta.headers.items() if k.lower().startswith("x-oss-meta-")
        }
        return ObjectHead(meta.content_length, meta.etag, user)

    def read_range(
        self, bucket: str, key: str, start: int, end: int, etag: str, consume: Callable[[bytes], None]
    ) -> None:
        """Stream bytes [start, end) of an object to `consume`, in order. A dropped connection resumes
        where it stopped; If-Match makes a replaced object an error rather than a splice. OSS sends no
        checksum for a range: the caller checks what it reads (a gzip member carries its CRC-32)."""
        b = self.bucket(bucket)
        offset = start

        def fetch() -> None:
            nonlocal offset
            headers = {"If-Match": f'"{etag}"', "x-oss-range-behavior": "standard"}
            result = b.get_object(key, byte_range=(offset, end - 1), headers=headers)
            if result.status != 206:
                raise DownloadFailed(f"oss://{bucket}/{key}: the range {offset}-{end - 1} was not honoured")
            while chunk := result.read(CHUNK):
                chunk = chunk[: end - offset]
                offset += len(chunk)
                consume(chunk)
                if offset >= end:
                    break
            if offset != end:
                raise ConnectionError(f"connection closed at byte {offset} of the range {start}-{end - 1}")

        if start >= end:
            return
        try:
            self._attempt(f"get {bucket}/{key} [{start}, {end})", fetch, progress=lambda: offset)
        except Exception as exc:
            raise self._translate(exc, bucket, key, failure=DownloadFailed, not_found=SourceNotFound) from exc

    def download_files(self, bucket: str, pairs: Sequence[tuple[str, str]]) -> int:
        """Download (key, dest) pairs in parallel. Returns total bytes."""
        total = 0
        with concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="oss-get") as pool:
            futures = [pool.submit(self.download_file, bucket, key, dest) for key, dest in pairs]
            for future in concurrent.futures.as_completed(futures):
                total += future.result()
        return total

    # --- uploads --------------------------------------------------------------------------

    def put_files(self, bucket: str, items: Sequence[PutItem], progress: Any = None) -> dict[str, str]:
        """Upload in parallel, large files in parallel parts. Returns key -> ETag. If any fails, the
        others in flight finish first, then PartialTransfer says which keys were sent at all."""
        if not items:
            return {}
        progress = progress or _Progress(self.log, "uploaded", len(items), sum(i.size for i in items))
        etags: dict[str, str] = {}
        started: set[str] = set()
        lock = threading.Lock()
        failed = threading.Event()

        gate = Concurrency(self.concurrency, self.max_concurrency)

        def one(item: PutItem, parts: concurrent.futures.Executor) -> None:
            if failed.is_set():
                return
            with lock:
                started.add(item.key)
            if item.size < self.multipart_threshold:  # one request: in flight under the gate
                with gate:
                    etag = self._upload_one(bucket, item, parts, progress)
            else:  # its parts run on their own pool, which the gate must not starve
                etag = self._upload_one(bucket, item, parts, progress)
            with lock:
                etags[item.key] = etag

        # Two pools: a file task may wait on its parts, so parts must not queue behind files.
        with (
            concurrent.futures.ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="oss-put") as files,
            concurrent.futures.ThreadPoolExecutor(self.concurrency, thread_name_prefix="oss-part") as parts,
        ):
            futures = {files.submit(one, item, parts): item for item in items}
            first: tuple[BaseException, PutItem] | None = None
            for future in concurrent.futures.as_completed(futures):
                exc = future.exception()
                if exc is not None and first is None:
                    first = (exc, futures[future])
                    failed.set()
        with self._lock:
            self.peak_concurrency = max(self.peak_concurrency, gate.limit)
        if first is not None:
            exc, item = first
            error = self._translate(exc, bucket, item.key, failure=UploadFailed)
            raise PartialTransfer(str(error), started=frozenset(started), done=dict(etags), cause=error) from exc
        return etags

    def copy_object(self, bucket: str, source_key: str, key: str, *, acl: str = "") -> str:
        """A server-side copy (content and metadata) within `bucket`; `acl` sets the copy's object ACL.
        Returns the copy's ETag when OSS sends it in a header, else "" (a copy keeps its source's)."""
        headers = {HDR_OBJECT_ACL: acl} if acl else {}

        def copy() -> str:
            return self.bucket(bucket).copy_object(bucket, source_key, key, headers=headers).etag or ""

        try:
            return self._attempt(f"copy {bucket}/{source_key} -> {key}", copy)
        except Exception as exc:
            raise self._translate(exc, bucket, source_key, failure=UploadFailed, not_found=SourceNotFound) from exc

    def put_json_if_absent(self, bucket: str, key: str, doc: Any, *, private: bool = True) -> bool:
        """Create bucket/key only if nothing is there (x-oss-forbid-overwrite). False if something was."""
        data = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Content-MD5": _b64md5(data),
            "Cache-Control": "no-cache",
            "x-oss-forbid-overwrite": "true",
        }
        if private:
            headers[HDR_OBJECT_ACL] = "private"
        try:
            self._attempt(f"create {bucket}/{key}", lambda: self.bucket(bucket).put_object(key, data, headers=headers))
        except oss2.exceptions.OssError as exc:
            if exc.status == 409 and exc.code == "FileAlreadyExists":
                return False
            raise self._translate(exc, bucket, key, failure=UploadFailed) from exc
        except Exception as exc:
            raise self._translate(exc, bucket, key, failure=UploadFailed) from exc
        return True

    def _upload_one(self, bucket: str, item: PutItem, parts: concurrent.futures.Executor, progress: _Progress) -> str:
        headers = dict(item.headers)
        if item.size >= self.multipart_threshold:
            etag = self._upload_multipart(bucket, item.key, item.path, item.size, headers, parts, progress)
            progress.add(0, file_done=True)
            return etag
        headers["Content-MD5"] = base64.b64encode(bytes.fromhex(item.md5)).decode()

        def put() -> str:
            with open(item.path, "rb") as f:
                return self.bucket(bucket).put_object(item.key, f, headers=headers).etag

        etag = self._attempt(f"put {bucket}/{item.key}", put)
        progress.add(item.size, file_done=True)
        return etag

    def _upload_multipart(
        self,
        bucket: str,
        key: str,
        path: str,
        size: int,
        headers: Mapping[str, str],
        parts: concurrent.futures.Executor,
        progress: _Progress,
    ) -> str:
        b = self.bucket(bucket)
        upload_id = self._attempt(
            f"initiate {bucket}/{key}", lambda: b.init_multipart_upload(key, headers=dict(headers)).upload_id
        )
        part_size = max(self.part_size, -(-size // 10_000))
        ranges = [(n + 1, start, min(part_size, size - start)) for n, start in enumerate(range(0, size, part_size))]

        def send_part(number: int, start: int, length: int) -> PartInfo:
            def attempt() -> PartInfo:
                with open(path, "rb") as f:
                    f.seek(start)
                    result = b.upload_part(key, upload_id, number, SizedFileAdapter(f, length))
                return PartInfo(number, result.etag, size=length, part_crc=result.crc)

            info = self._attempt(f"part {number} of {bucket}/{key}", attempt)
            progress.add(length)
            return info

        try:
            infos = list(parts.map(lambda r: send_part(*r), ranges))

            def complete() -> str:
                try:
                    return b.complete_multipart_upload(key, upload_id, infos).etag
                except oss2.exceptions.NoSuchUpload:
                    # A retried Complete whose first try succeeded but whose answer was lost.
                    meta = b.get_object_meta(key)
                    if meta.content_length != size:
                        raise
                    return meta.etag

            return self._attempt(f"complete {bucket}/{key}", complete)
        except BaseException:
            try:
                b.abort_multipart_upload(key, upload_id)
            except Exception:
                pass
            raise


class _Received:
    """A download in progress: the bytes written so far and their CRC64, so a retry resumes."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.crc = Crc64()
        self.offset = 0

    def fetch(self, bucket: oss2.Bucket, key: str, etag: str, size: int, progress: _Progress) -> None:
        headers = {"If-Match": f'"{etag}"', "x-oss-range-behavior": "standard"}
        if self.offset == 0:
            result = bucket.get_object(key, headers=headers)
        else:
            result = bucket.get_object(key, byte_range=(self.offset, None), headers=headers)
            if result.status != 206:  # the range was not honoured: start over
                self.out.seek(0)
                self.out.truncate()
                self.crc, self.offset = Crc64(), 0
        while chunk := result.read(CHUNK):
            self.out.write(chunk)
            self.crc.update(chunk)
            self.offset += len(chunk)
            progress.add(len(chunk))
        if self.offset != size:
            raise ConnectionError(f"connection closed at byte {self.offset} of {size}")


def _is_transient(exc: BaseException) -> bool:
    """5xx, 429, timeouts, connection errors, and bodies corrupted in flight: worth a retry.
    Signature, permission and not-found errors are not."""
    if isinstance(exc, oss2.exceptions.InconsistentError):
        return True
    if isinstance(exc, oss2.exceptions.RequestError):
        return True
    if isinstance(exc, oss2.exceptions.OssError):
        return exc.status >= 500 or exc.status == 429 or exc.code == "InvalidDigest"
    # A body cut off mid-read surfaces from requests/urllib3 directly, not wrapped by oss2.
    return isinstance(
        exc,
        ConnectionError
        | TimeoutError
        | requests.RequestException
        | urllib3.exceptions.HTTPError
        | http.client.HTTPException,
    )


def _proxies_for(endpoint: str) -> dict[str, str]:
    """The proxies the environment names (HTTP_PROXY, HTTPS_PROXY), read once: none when NO_PROXY
    covers the endpoint's host."""
    proxies = urllib.request.getproxies()
    if "no" in proxies and urllib.request.proxy_bypass_environment(urlsplit(endpoint).hostname or "", proxies):
        return {}
    proxies.pop("no", None)
    return proxies


def _check_crc(result: Any) -> None:
    client, server = getattr(result, "client_crc", None), getattr(result, "server_crc", None)
    if client is not None and server is not None and client != server:
        raise oss2.exceptions.InconsistentError(f"CRC64 mismatch: {client} != {server}", result.request_id)


def _b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()
