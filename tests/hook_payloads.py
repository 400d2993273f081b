"""Webhook deliveries as the providers send them: the recorded bodies (tests/fixtures/hooks) filled
in, and the headers each provider signs them with (its documented scheme, computed here)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
import uuid

HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hooks")
DEFAULTS = {
    "branch": "main",
    "before": "1" * 40,
    "sha": "2" * 40,
    "checkout_sha": "2" * 40,
    "base_sha": "3" * 40,
    "action": "opened",
    "action_desc": "",
    "state": "open",
    "merged": "false",
    "number": "1",
    "oldrev": "",
    "timestamp": "0",
    "token": "",
}


def body(name: str, **fields: object) -> bytes:
    """The recorded `name`.json with its {{placeholders}} filled (head_clone_url defaults to clone_url)."""
    with open(os.path.join(HOOKS, name + ".json"), encoding="utf-8") as f:
        text = f.read()
    values = {**DEFAULTS, **{k: str(v) for k, v in fields.items()}}
    values.setdefault("head_clone_url", values.get("clone_url", ""))
    values.setdefault("head_full_name", "acme/web")
    text = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)
    return json.dumps(json.loads(text)).encode()


def github(event: str, payload: bytes, secret: str, delivery: str | None = None) -> dict[str, str]:
    signature = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc1234",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "500100",
        "X-Hub-Signature-256": f"sha256={signature}",
    }


def gitlab(event: str, token: str, delivery: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/18.0.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4()),
        "X-Gitlab-Instance": "https://gitlab.example.com",
    }


def gitee_signed(event: str, secret: str, at_ms: int | None = None) -> dict[str, str]:
    """Gitee's signing mode: X-Gitee-Token is base64(HMAC-SHA256(secret, "<ms>\\n<secret>"))."""
    stamp = str(at_ms if at_ms is not None else int(time.time() * 1000))
    digest = hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "git-oschina-hook",
        "X-Gitee-Event": event,
        "X-Gitee-Timestamp": stamp,
        "X-Gitee-Token": base64.b64encode(digest).decode(),
        "X-Git-Oschina-Event": event,
    }


def codeup(event: str, token: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Codeup-Event": event, "X-Codeup-Token": token}
