"""Strict stand-ins for the providers' APIs a build reports to, checking what the real ones check
(from their API documentation): the token, the path, the fields and their allowed values.

- GitHub `POST /repos/{owner}/{repo}/statuses/{sha}`: `Authorization: Bearer <token>`, JSON with
  `state` in error|failure|pending|success, optional `target_url`, `description` (<= 140), `context`.
- GitLab `POST /projects/{id}/statuses/{sha}`: `PRIVATE-TOKEN`, `state` in
  pending|running|success|failed|canceled|skipped, optional `name`, `target_url`, `description`.
- Gitee `POST /repos/{owner}/{repo}/pulls/{number}/comments`: form fields `access_token`, `body`.
- Codeup (Yunxiao OpenAPI, CreateCommitStatus) `POST /oapi/v1/codeup/organizations/{organizationId}/
  repositories/{repositoryId}/commits/{sha}/statuses` (the region edition without the organization):
  `x-yunxiao-token`, JSON with `state` in error|failure|pending|success, optional `context` (<= 50),
  `description`, `targetUrl`; the repository an id or its URL-encoded full path.

A wrong token is 401, a bad shape 422, as the real ones answer; accepted calls are kept in `calls`.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

SHA = r"[0-9a-f]{40}"


class StatusApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider: str, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.provider, self.token = provider, token
        self.calls: list[dict] = []
        self.refused: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        base = f"http://127.0.0.1:{self.server_address[1]}"
        return {"github": base, "gitlab": base + "/api/v4", "gitee": base + "/api/v5", "codeup": base}[self.provider]

    def check(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, dict]:
        if self.provider == "github":
            m = re.fullmatch(rf"/repos/([\w.-]+)/([\w.-]+)/statuses/({SHA})", path)
            if not m:
                return 404, "Not Found", {}
            if headers.get("authorization") != f"Bearer {self.token}":
                return 401, "Bad credentials", {}
            doc = json.loads(body)
            if doc.get("state") not in ("error", "failure", "pending", "success"):
                return 422, "state is not one of error, failure, pending, success", {}
            if len(doc.get("description", "")) > 140 or set(doc) - {"state", "target_url", "description", "context"}:
                return 422, "Validation Failed", {}
            return 201, "", {"repo": f"{m[1]}/{m[2]}", "sha": m[3], **doc}
        if self.provider == "gitlab":
            m = re.fullmatch(rf"/api/v4/projects/([^/]+)/statuses/({SHA})", path)
            if not m:
                return 404, "404 Not Found", {}
            if headers.get("private-token") != self.token:
                return 401, "401 Unauthorized", {}
            doc = json.loads(body)
            if doc.get("state") not in ("pending", "running", "success", "failed", "canceled", "skipped"):
                return 400, "state does not have a valid value", {}
            return 201, "", {"project": unquote(m[1]), "sha": m[2], **doc}
        if self.provider == "codeup":
            m = re.fullmatch(
                rf"/oapi/v1/codeup/(?:organizations/([^/]+)/)?repositories/([^/]+)/commits/({SHA})/statuses", path
            )
            if not m or "/" in unquote(m[1] or ""):
                return 404, "Not Found", {}
            if headers.get("x-yunxiao-token") != self.token:
                return 401, "Unauthorized", {}
            if headers.get("content-type", "").split(";")[0] != "application/json":
                return 415, "Unsupported Media Type", {}
            doc = json.loads(body)
            if doc.get("state") not in ("error", "failure", "pending", "success"):
                return 400, "state must be one of error, failure, pending, success", {}
            if len(doc.get("context", "")) > 50 or set(doc) - {"context", "description", "state", "targetUrl"}:
                return 400, "InvalidParam", {}
            return 200, "", {"organization": unquote(m[1] or ""), "repository": unquote(m[2]), "sha": m[3], **doc}
        m = re.fullmatch(r"/api/v5/repos/([\w.-]+)/([\w.-]+)/pulls/(\d+)/comments", path)
        if not m:
            return 404, "Not Found", {}
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("access_token") != self.token:
            return 401, "401 Unauthorized: Access token does not exist", {}
        if not form.get("body"):
            return 400, "body is missing", {}
        return 201, "", {"repo": f"{m[1]}/{m[2]}", "pr": int(m[3]), "body": form["body"]}


class _Handler(BaseHTTPRequestHandler):
    server: StatusApi

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, message, call = self.server.check(self.path.split("?")[0], headers, body)
        except ValueError:
            status, message, call = 400, "Problems parsing JSON", {}
        if status < 300:
            self.server.calls.append(call)
        else:
            self.server.refused.append(f"{status} {message} {self.path}")
        answer = json.dumps({"message": message} if message else {"id": len(self.server.calls)}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
