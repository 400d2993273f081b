"""Telling a team how a build ended: generic webhooks and DingTalk, Feishu and WeCom group bots.

Each target of a request's `notify` list gets a message in its own format and signing scheme:

- `webhook`: the result (or the error) as JSON, POSTed with `X-Fcbuild-Signature: sha256=<hex
  HMAC-SHA256 of the body with the secret>` and `X-Fcbuild-Event: build.succeeded|build.failed`;
- `dingtalk`: a markdown message; with a secret, `timestamp` (ms) and `sign` (Base64 of HMAC-SHA256
  of "timestamp\\nsecret" keyed by the secret, URL-encoded) are added to the URL;
- `feishu`: a text message; with a secret, `timestamp` (s) and `sign` (Base64 of HMAC-SHA256 of an
  empty message keyed by "timestamp\\nsecret") go in the body;
- `wecom`: a markdown message (the key in the URL is its only credential).

Sending never fails the build: a few tries with a short timeout, in the background; the answer
waits for them at most a bound. Credentials (secrets, URL tokens) never appear in a message or a log.
A receiver is a place the requester chose: its address must be a public one (egress.py), a redirect
is not followed, and nothing of its answer but the status (and a bot's numeric error code) goes into
the result.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import egress

KINDS = ("webhook", "dingtalk", "feishu", "wecom")
EVENTS = ("success", "failure")
TIMEOUT_S = 5.0
TRIES = 3
WAIT_S = 10.0  # the longest the build's answer waits for its notifications


@dataclass(frozen=True)
class Target:
    kind: str
    url: str
    secret: str = ""
    on: tuple[str, ...] = EVENTS

    @property
    def where(self) -> str:
        """For logs and results: the scheme and host only (a bot's URL carries its token)."""
        parts = urllib.parse.urlsplit(self.url)
        return f"{self.kind} {parts.scheme}://{parts.netloc}"

    def secrets(self) -> tuple[str, ...]:
        query = [v for _, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query) if len(v) >= 6]
        path_tail = urllib.parse.urlsplit(self.url).path.rsplit("/", 1)[-1]
        return tuple(v for v in (self.secret, *query, path_tail if len(path_tail) >= 16 else "") if v)


@dataclass(frozen=True)
class Outcome:
    """What a build ended with, for a message: no secret may be in it."""

    status: str  # succeeded | failed
    request_id: str
    target: str  # oss://bucket/prefix/
    site_urls: tuple[str, ...] = ()
    duration_s: float = 0.0
    files_changed: int = 0
    release: str = ""
    error_type: str = ""
    cause: str = ""  # the error's first lines
    result: Mapping[str, Any] | None = None  # the whole result (success) for generic webhooks

    @property
    def event(self) -> str:
        return "success" if self.status == "succeeded" else "failure"

    def headline(self) -> str:
        if self.status == "succeeded":
            return f"fcbuild: {self.target} deployed (release {self.release})"
        return f"fcbuild: the build of {self.target} failed ({self.error_type})"

    def lines(self) -> list[str]:
        out = [f"request {self.request_id}, {self.duration_s:.1f} s"]
        if self.status == "succeeded":
            out.append(f"{self.files_changed} files changed")
            out.extend(self.site_urls)
        else:
            out.append(self.cause)
        return out


def message(target: Target, outcome: Outcome, now: float) -> tuple[str, bytes, dict[str, str]]:
    """The request to send for `target`: URL, body, headers. Pure (for tests and for sending)."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if target.kind == "webhook":
        doc = dict(outcome.result or {}) if outcome.status == "succeeded" else {}
        doc.update({"requestId": outcome.request_id, "status": outcome.status, "target": outcome.target})
        if outcome.status != "succeeded":
            doc.update({"errorType": outcome.error_type, "errorMessage": outcome.cause})
        body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()
        headers["X-Fcbuild-Event"] = f"build.{outcome.status}"
        if target.secret:
            digest = hmac.new(target.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Fcbuild-Signature"] = f"sha256={digest}"
        return target.url, body, headers
    title = outcome.headline()
    text = "\n".join(outcome.lines())
    if target.kind == "dingtalk":
        url = target.url
        if target.secret:
            stamp = str(int(now * 1000))
            mac = hmac.new(target.secret.encode(), f"{stamp}\n{target.secret}".encode(), hashlib.sha256).digest()
            sign = urllib.parse.quote_plus(base64.b64encode(mac))
            url += ("&" if "?" in url else "?") + f"timestamp={stamp}&sign={sign}"
        markdown = f"### {title}\n\n" + "\n\n".join(f"- {line}" for line in outcome.lines())
        body = json.dumps({"msgtype": "markdown", "markdown": {"title": title, "text": markdown}}, ensure_ascii=False)
        return url, body.encode(), headers
    if target.kind == "feishu":
        doc: dict[str, Any] = {"msg_type": "text", "content": {"text": f"{title}\n{text}"}}
        if target.secret:
            stamp = str(int(now))
            mac = hmac.new(f"{stamp}\n{target.secret}".encode(), b"", hashlib.sha256).digest()
            doc.update({"timestamp": stamp, "sign": base64.b64encode(mac).decode()})
        return target.url, json.dumps(doc, ensure_ascii=False).encode(), headers
    content = f"**{title}**\n" + "\n".join(f"> {line}" for line in outcome.lines())
    return (
        target.url,
        json.dumps({"msgtype": "markdown", "markdown": {"content": content}}, ensure_ascii=False).encode(),
        headers,
    )


def _accepted(kind: str, status: int, body: bytes) -> str:
    """ "" when the receiver took the message, else why not (the bots answer 200 with an error code)."""
    if not 200 <= status < 300:
        return f"HTTP {status}"
    if kind in ("dingtalk", "wecom", "feishu"):
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            return ""
        code = doc.get("errcode", doc.get("code", doc.get("StatusCode", 0))) if isinstance(doc, dict) else 0
        if code not in (0, None):
            return f"{kind} error {code}" if isinstance(code, int) else f"{kind} answered with an error"
    return ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A receiver that answers with a redirect is not followed anywhere (another host, an internal
    address, another scheme): the 3xx is its answer."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@functools.lru_cache(maxsize=1)
def opener() -> urllib.request.OpenerDirector:
    """HTTP(S) with certifi's trust that follows no redirect."""
    return urllib.request.build_opener(_NoRedirect(), urllib.request.HTTPSHandler(context=tls()))


@functools.lru_cache(maxsize=1)
def tls() -> ssl.SSLContext:
    """Verify receivers against certifi's CA bundle, as the OSS and CDN clients do: the same trust on
    any image, with or without a system CA store, whatever SSL_CERT_FILE says."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class Notifier:
    """Sends one build's notifications in background threads."""

    def __init__(
        self,
        targets: Sequence[Target],
        redact: Callable[[str], str],
        log: Any,
        allowed: Sequence[egress.Network] = (),
    ) -> None:
        self.targets = [t for t in targets]
        self.allowed = tuple(allowed)
        self.redact = redact
        self.log = log
        self.results: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def send(self, outcome: Outcome) -> None:
        for target in self.targets:
            if outcome.event not in target.on:
                continue
            thread = threading.Thread(target=self._deliver, args=(target, outcome), name="notify", daemon=True)
            self._threads.append(thread)
            thread.start()

    def wait(self, bound_s: float = WAIT_S) -> list[dict[str, Any]]:
        """Wait for the deliveries at most `bound_s`; what has not finished is reported as pending."""
        deadline = time.monotonic() + bound_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            done = list(self.results)
        pending = len(self._threads) - len(done)
        return done + [{"pending": pending}] if pending else done

    def _deliver(self, target: Target, outcome: Outcome) -> None:
        why = ""
        for attempt in range(TRIES):
            url, body, headers = message(target, outcome, time.time())
            try:
                egress.check_url(url, "notify", self.allowed)
            except Exception as exc:  # AccessDenied, InvalidRequest: refused, not retried
                why = self.redact(str(exc)).replace(url, target.where)[:300]
                break
            try:
                req = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with opener().open(req, timeout=TIMEOUT_S) as resp:
                    why = _accepted(target.kind, resp.status, resp.read(65536))
            except urllib.error.HTTPError as exc:
                why = f"HTTP {exc.code}" + (" (a redirect, not followed)" if 300 <= exc.code < 400 else "")
            except (OSError, ValueError) as exc:  # refused, reset, timed out, a bad URL
                why = self.redact(f"{type(exc).__name__}: {exc}")[:200]
            if not why or why.startswith("HTTP 3"):
                break
            if attempt + 1 < TRIES:
                time.sleep(0.5 * (attempt + 1))
        record = {"to": target.where, "ok": not why}
        if why:
            record["error"] = why
            self.log.warning("notification to %s not delivered after %d tries: %s", target.where, TRIES, why)
        else:
            self.log.info("notification sent to %s", target.where)
        with self._lock:
            self.results.append(record)
