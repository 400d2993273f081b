"""Bucket operations: Put and Delete a bucket, ListObjects (V1 and V2), DeleteMultipleObjects."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from typing import Any

from localoss.errors import OssError
from localoss.signing import Request, _iso
from localoss.wire import MAX_DELETE_KEYS, _encode, _list_page


class BucketOps:
    """Mixed into the request handler (localoss.server.OssHandler)."""

    # bucket operations
    def op_put_bucket(self, req: Request, *, corrupt: bool) -> None:
        self._read_small_body()
        self.server.store.create_bucket(req.bucket)
        self._send(200, {"Location": f"/{req.bucket}"})

    def op_delete_bucket(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        if self.server.store.objects(req.bucket):
            raise OssError(409, "BucketNotEmpty", "The bucket you tried to delete is not empty.")
        self.server.store.delete_bucket(req.bucket)
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
