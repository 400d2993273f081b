"""Buckets and objects on local disk: data, metadata, ACLs, uploads; every write atomic."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from localoss.errors import OssError, _no_such_bucket, _no_such_key

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
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def valid_bucket_name(name: str) -> bool:
    """OSS's rule: 3-63 characters of a-z, 0-9 and -, starting and ending with a letter or digit."""
    return 3 <= len(name) <= 63 and set(name) <= _BUCKET_CHARS and "-" not in (name[0], name[-1])


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
        """A path of the bucket's, proven to lie inside the root (a bucket name cannot climb out)."""
        if not valid_bucket_name(bucket):
            raise OssError(400, "InvalidBucketName", "The specified bucket is not valid.", "0015-00000101")
        path = os.path.join(self.root, bucket, ".oss", *parts)
        if os.path.commonpath([self.root, os.path.abspath(path)]) != self.root or any(
            p in ("..", ".") or "/" in p or "\0" in p for p in parts
        ):
            raise OssError(400, "InvalidArgument", "The path leads out of the store.")
        return path

    def create_bucket(self, bucket: str) -> None:
        for sub in ("objects", "meta", "tmp", "uploads"):
            os.makedirs(self._dir(bucket, sub), exist_ok=True)

    def delete_bucket(self, bucket: str) -> None:
        folder = os.path.dirname(self._dir(bucket))  # the name is checked there
        with self._lock:
            shutil.rmtree(folder)
            self._index.pop(bucket, None)

    def website(self, bucket: str) -> dict[str, Any] | None:
        try:
            with open(self._dir(bucket, "website.json"), encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def set_website(self, bucket: str, config: dict[str, Any] | None) -> None:
        path = self._dir(bucket, "website.json")
        if config is None:
            _remove(path)
            return
        os.replace(self._temp_json(bucket, config), path)

    def read_fresh(self, bucket: str, key: str) -> tuple[ObjectMeta, BinaryIO] | None:
        """The object as it is on disk now (another process may have written it), opened: its
        metadata and its data. None if there is none."""
        for _ in range(3):  # the data file can be replaced between the two reads
            try:
                with open(self._meta_path(bucket, key), encoding="utf-8") as f:
                    meta = ObjectMeta(**json.load(f))
                return meta, open(self._dir(bucket, "objects", meta.data_file), "rb")  # noqa: SIM115
            except FileNotFoundError:
                continue
            except (ValueError, TypeError):
                return None
        return None

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

    def _temp_json(self, bucket: str, doc: Mapping[str, Any]) -> str:
        """`doc` written to a new temporary file of the bucket, to be renamed into place."""
        path = self.temp_path(bucket)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        return path

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
        tmp_meta = self._temp_json(bucket, meta.__dict__)  # outside the lock: only the switch is serialised
        try:
            with self._lock:
                index = self.objects(bucket)
                old = index.get(meta.key)
                if forbid_overwrite and old is not None:
                    os.unlink(self._dir(bucket, "objects", meta.data_file))
                    message = "The object you specified already exists."
                    raise OssError(409, "FileAlreadyExists", message, "0026-00000003")
                os.replace(tmp_meta, meta_path)
                index[meta.key] = meta
        except BaseException:
            _remove(tmp_meta)
            raise
        if old is not None:
            self._unlink_data(bucket, old)

    def set_acl(self, bucket: str, key: str, acl: str) -> None:
        with self._lock:
            meta = self.get(bucket, key)
            meta.acl = acl
            os.replace(self._temp_json(bucket, meta.__dict__), self._meta_path(bucket, key))

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


def _stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    kept = {}
    for name, value in headers.items():
        if name in STORED_HEADERS:
            kept[name.title()] = value
        elif name.startswith("x-oss-meta-"):
            kept[name] = value
    return kept


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
