"""Multipart uploads: Initiate, UploadPart, ListParts, Complete, Abort; OSS's rules on part order and size."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote, unquote

from localoss.crc import crc64, crc64_combine
from localoss.errors import OssError, _no_such_bucket
from localoss.signing import Request, _iso
from localoss.store import ObjectMeta, _object_acl, _remove, _stored_headers
from localoss.wire import CHUNK, MAX_PART_NUMBER, MIN_PART_SIZE, _parse_range


class MultipartOps:
    """Mixed into the request handler (localoss.server.OssHandler)."""

    # multipart
    def op_initiate_multipart(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        self._check_key(req)
        self._read_small_body()
        upload_id = uuid.uuid4().hex
        folder = self.server.store._dir(req.bucket, "uploads", upload_id)
        os.makedirs(folder)
        info = {
            "key": req.key,
            "initiated": time.time(),
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
        if "x-oss-copy-source" in req.headers:
            path, size, digest, crc = self._copy_part_source(req)
        else:
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
        if "x-oss-copy-source" in req.headers:
            self._send_xml(
                "CopyPartResult",
                [("LastModified", _iso(part["last_modified"])), ("ETag", part["etag"])],
                {"ETag": part["etag"], "x-oss-hash-crc64ecma": str(crc)},
            )
            return
        self._send(200, {"ETag": part["etag"], "x-oss-hash-crc64ecma": str(crc)})

    def _copy_part_source(self, req: Request) -> tuple[str, int, bytes, int]:
        """UploadPartCopy: the part's bytes come from an object (and x-oss-copy-source-range)."""
        self._read_small_body()
        source = unquote(req.headers["x-oss-copy-source"])
        src_bucket, _, src_key = source.lstrip("/").partition("/")
        if not self.server.store.bucket_exists(src_bucket):
            raise _no_such_bucket(src_bucket)
        meta = self.server.store.get(src_bucket, src_key)
        start, end = 0, meta.size - 1
        wanted = req.headers.get("x-oss-copy-source-range")
        if wanted:
            rng = _parse_range(wanted, meta.size)
            if not isinstance(rng, tuple):
                raise OssError(416, "InvalidRange", "The requested range cannot be satisfied.", "0003-00000104")
            start, end = rng
        path = self.server.store.temp_path(req.bucket)
        md5, crc, size = hashlib.md5(), 0, 0
        with self.server.store.open(src_bucket, meta) as fin, open(path, "wb") as fout:
            fin.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = fin.read(min(remaining, CHUNK))
                if not chunk:
                    break
                fout.write(chunk)
                md5.update(chunk)
                crc = crc64(chunk, crc)
                size += len(chunk)
                remaining -= len(chunk)
        return path, size, md5.digest(), crc

    def op_list_multipart_uploads(self, req: Request, *, corrupt: bool) -> None:
        """The uploads initiated and neither completed nor aborted, by key then upload id."""
        self._bucket(req)
        prefix = req.param("prefix") or ""
        folder = self.server.store._dir(req.bucket, "uploads")
        uploads = []
        for upload_id in os.listdir(folder):
            try:
                with open(os.path.join(folder, upload_id, "upload.json"), encoding="utf-8") as f:
                    info = json.load(f)
            except (OSError, ValueError):
                continue
            if info["key"].startswith(prefix):
                uploads.append((info["key"], upload_id, info.get("initiated", 0.0)))
        uploads.sort()
        limit = int(req.param("max-uploads") or 1000)
        children: list[tuple[str, Any]] = [
            ("Bucket", req.bucket),
            ("KeyMarker", ""),
            ("UploadIdMarker", ""),
            ("NextKeyMarker", uploads[limit - 1][0] if len(uploads) > limit else ""),
            ("NextUploadIdMarker", uploads[limit - 1][1] if len(uploads) > limit else ""),
            ("Delimiter", ""),
            ("Prefix", prefix),
            ("MaxUploads", limit),
            ("IsTruncated", "true" if len(uploads) > limit else "false"),
        ]
        for key, upload_id, initiated in uploads[:limit]:
            children.append(("Upload", [("Key", key), ("UploadId", upload_id), ("Initiated", _iso(initiated))]))
        self._send_xml("ListMultipartUploadsResult", children)

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
        forbid = req.headers.get("x-oss-forbid-overwrite", "").lower() == "true"
        self.server.store.commit(req.bucket, path, meta, forbid_overwrite=forbid)
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
