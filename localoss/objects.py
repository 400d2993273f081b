"""Object operations: Put, Get (with Range and conditions), Head, GetObjectMeta, Copy, Delete, object ACLs."""

from __future__ import annotations

import base64
import email.utils
import shutil
import time
from urllib.parse import unquote

from localoss.errors import OssError, _no_such_bucket
from localoss.signing import Request, _http_date, _iso
from localoss.store import ObjectMeta, _object_acl, _remove, _stored_headers
from localoss.wire import CHUNK, OWNER_ID, _parse_range, _Reset


class ObjectOps:
    """Mixed into the request handler (localoss.server.OssHandler)."""

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
        forbid = req.headers.get("x-oss-forbid-overwrite", "").lower() == "true"
        try:
            self.server.store.commit(req.bucket, path, meta, forbid_overwrite=forbid)
        except BaseException:
            _remove(path)
            raise
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
        not_modified = OssError(304, "NotModified", "Not Modified")
        not_modified.extra = {"ETag": meta.etag, "Last-Modified": _http_date(meta.last_modified)}
        if_none = self.headers.get("If-None-Match")
        if if_none is not None:
            if if_none.strip('"').upper() == meta.etag.strip('"'):
                raise not_modified
            return  # If-Modified-Since counts only without If-None-Match
        since = self.headers.get("If-Modified-Since")
        if since:
            parsed = email.utils.parsedate_tz(since)
            if parsed and int(meta.last_modified) <= email.utils.mktime_tz(parsed):
                raise not_modified

    def op_delete_object(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        self.server.store.delete(req.bucket, req.key)
        self._send(204)
