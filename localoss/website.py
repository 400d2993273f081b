"""The static website: unsigned reads of a bucket's objects, with index documents, as OSS hosting serves them."""

from __future__ import annotations

import shutil
from urllib.parse import unquote

from localoss.errors import OssError
from localoss.signing import _http_date
from localoss.wire import CHUNK, SITE_PREFIX


class WebsiteOps:
    """Mixed into the request handler (localoss.server.OssHandler)."""

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
