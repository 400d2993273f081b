"""The static website: a bucket served to browsers as OSS static hosting serves it.

- `/_site/<bucket>/<path>`: any bucket, unsigned, with `index.html` for folders (always on).
- With `--website BUCKET[/PREFIX]` (a `Website`), unsigned GETs at `/` serve that bucket and prefix as
  its own domain would (a CDN domain with an origin path): the index document for folders, a
  folder without its slash redirected, the error document with its status for what is missing (200
  with `index.html` is how single-page apps use OSS). The bucket's own website configuration
  (PutBucketWebsite) fills in what the flags leave out.

Reads always see the store as it is on disk now, even while another process writes to it.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from localoss.errors import OssError
from localoss.signing import Request, _http_date
from localoss.store import ObjectMeta, valid_bucket_name
from localoss.wire import CHUNK, SITE_PREFIX

SIGNED_QUERY = ("OSSAccessKeyId", "Signature", "x-oss-signature", "x-oss-credential", "security-token")


@dataclass(frozen=True)
class Website:
    bucket: str
    prefix: str = ""  # "" or ending in /
    index_document: str = ""  # "": the bucket's configuration, else index.html
    error_document: str = ""  # a key under the prefix; "": the bucket's configuration, else none
    error_status: int = 0  # 200 or 404; 0: the bucket's configuration, else 404

    @classmethod
    def parse(cls, text: str, **kw: Any) -> Website:
        bucket, _, prefix = text.partition("/")
        prefix = prefix.strip("/")
        return cls(bucket, f"{prefix}/" if prefix else "", **kw)


class WebsiteOps:
    """Mixed into the request handler (localoss.server.OssHandler)."""

    def _anonymous(self, query: str) -> bool:
        """A browser's request: no signature in the headers or the query."""
        if self.headers.get("Authorization"):
            return False
        return not any(k in SIGNED_QUERY for k, _ in parse_qsl(query, keep_blank_values=True))

    # the bucket's website configuration

    def op_put_bucket_website(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        body = self._read_small_body()
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            raise OssError(400, "MalformedXML", "The XML you provided was not well-formed.") from None
        suffix = root.findtext("IndexDocument/Suffix") or ""
        config = {
            "index": suffix,
            "subdir": (root.findtext("IndexDocument/SupportSubDir") or "false").lower() == "true",
            "error": root.findtext("ErrorDocument/Key") or "",
            "errorStatus": int(root.findtext("ErrorDocument/HttpStatus") or 404),
        }
        if not suffix or config["errorStatus"] not in (200, 404):
            raise OssError(400, "InvalidArgument", "The website configuration is not valid.")
        self.server.store.set_website(req.bucket, config)
        self._send(200)

    def op_get_bucket_website(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        config = self.server.store.website(req.bucket)
        if config is None:
            raise OssError(
                404, "NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration."
            )
        children: list[tuple[str, Any]] = [
            ("IndexDocument", [("Suffix", config["index"]), ("SupportSubDir", str(config["subdir"]).lower())])
        ]
        if config["error"]:
            children.append(("ErrorDocument", [("Key", config["error"]), ("HttpStatus", config["errorStatus"])]))
        self._send_xml("WebsiteConfiguration", children)

    def op_delete_bucket_website(self, req: Request, *, corrupt: bool) -> None:
        self._bucket(req)
        self.server.store.set_website(req.bucket, None)
        self._send(204)

    # serving

    def _serve_site(self, method: str, rest: str) -> None:
        """`/_site/<bucket>/<path>`: any bucket, as a public-read website."""
        bucket, _, raw = rest.partition("/")
        if not valid_bucket_name(bucket) or not self.server.store.bucket_exists(bucket):
            self._send_text(404, "no such bucket\n")
            return
        self._serve(method, Website(bucket, index_document="index.html"), unquote(raw), f"{SITE_PREFIX}{bucket}/")

    def _serve_website(self, method: str, path: str) -> None:
        site = self.server.website
        self._serve(method, site, unquote(path).lstrip("/"), "/")

    def _serve(self, method: str, site: Website, path: str, base: str) -> None:
        store = self.server.store
        config = store.website(site.bucket) or {}
        index = site.index_document or config.get("index") or "index.html"
        error_key = site.error_document or config.get("error", "")
        error_status = site.error_status or config.get("errorStatus", 404)
        key = site.prefix + (path + index if path == "" or path.endswith("/") else path)
        found = store.read_fresh(site.bucket, key)
        if found is None and path and not path.endswith("/") and store.read_fresh(site.bucket, f"{key}/{index}"):
            self._send(301, {"Location": base + quote(path) + "/"})
            return
        status = 200
        if found is None and error_key:
            found, status = store.read_fresh(site.bucket, site.prefix + error_key), error_status
        if found is None:
            self._send_text(404, f"404 Not Found: {path}\n")
            return
        meta, data = found
        with data:
            if meta.acl == "private":  # the website serves the bucket as public-read; this object is not
                denied = OssError(403, "AccessDenied", "You have no right to access this object because of object acl.")
                self._send_error(denied, method)
                return
            headers = self._site_headers(meta)
            if status == 200 and self.headers.get("If-None-Match", "").strip() == meta.etag:
                self._send(304, headers)
                return
            self._send(status, headers, length=meta.size)
            if method == "GET":
                shutil.copyfileobj(data, self.wfile, CHUNK)

    def _site_headers(self, meta: ObjectMeta) -> dict[str, str]:
        headers = {
            "Content-Type": meta.content_type,
            "ETag": meta.etag,
            "Last-Modified": _http_date(meta.last_modified),
        }
        headers.update(meta.headers)
        return headers

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, {"Content-Type": "text/plain; charset=utf-8"}, text.encode())
