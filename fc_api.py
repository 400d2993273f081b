"""The function invoking itself, asynchronously, through FC's InvokeFunction API (2023-03-30).

A webhook is answered at once and the build runs as an asynchronous invocation: FC queues it, retries
it (maxAsyncRetryAttempts), sends it to the configured destinations and applies the function's
timeout, and the instance that answered the webhook may be frozen without harm.

One signed POST, made here with the stdlib: the official SDK (alibabacloud-fc20230330) brings ~900
modules (aiohttp, cryptography, APScheduler...) for it; bundled into the frozen binary it took the
binary from 27 to 48 MB and its start from 0.17 to 0.25 s (README, "Measured"). The signature is
Alibaba Cloud's V3 scheme (ACS3-HMAC-SHA256) as FC's API reference gives it; the tests check that the
local stand-in (localfc, written from the same documentation) accepts both this request and the
official SDK's.

The endpoint is FC's internal one for the function's account and region
(`<account>.<region>-internal.fc.aliyuncs.com`, HTTPS), or FCBUILD_FC_ENDPOINT (`https://host[:port]`
or `http://...`, e.g. a local stand-in).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import ssl
import time
from urllib.parse import quote, urlsplit

from context import FcContext
from errors import FcBuildError

API_VERSION = "2023-03-30"
ALGORITHM = "ACS3-HMAC-SHA256"


class InvokeFailed(FcBuildError):
    """FC did not take the asynchronous invocation; nothing was queued."""

    error_type = "InvokeFailed"


def endpoint(ctx: FcContext, configured: str) -> tuple[str, str]:
    """(scheme, host[:port]) of FC's API for this function."""
    if configured:
        parts = urlsplit(configured if "://" in configured else "https://" + configured)
        return parts.scheme or "https", parts.netloc
    if not (ctx.account_id and ctx.region):
        raise InvokeFailed(
            "cannot invoke the function: its account id and region are unknown (set FCBUILD_FC_ENDPOINT)"
        )
    return "https", f"{ctx.account_id}.{ctx.region}-internal.fc.aliyuncs.com"


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def signed_headers(
    method: str, host: str, path: str, query: dict[str, str], body: bytes, headers: dict[str, str], creds: object
) -> dict[str, str]:
    """`headers` with the V3 signature's own (x-acs-*, Authorization) added."""
    all_headers = {
        **{k.lower(): v for k, v in headers.items()},
        "host": host,
        "x-acs-action": "InvokeFunction",
        "x-acs-version": API_VERSION,
        "x-acs-date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "x-acs-signature-nonce": os.urandom(16).hex(),
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    token = getattr(creds, "security_token", "")
    if token:
        all_headers["x-acs-security-token"] = token
    names = sorted(n for n in all_headers if n in ("host", "content-type") or n.startswith(("x-acs-", "x-fc-")))
    canonical = "\n".join(
        [
            method,
            "/".join(_encode(segment) for segment in path.split("/")),
            "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query.items())),
            "".join(f"{n}:{all_headers[n].strip()}\n" for n in names),
            ";".join(names),
            all_headers["x-acs-content-sha256"],
        ]
    )
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    secret = creds.access_key_secret
    signature = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    key_id = creds.access_key_id
    all_headers["authorization"] = (
        f"{ALGORITHM} Credential={key_id},SignedHeaders={';'.join(names)},Signature={signature}"
    )
    return all_headers


def invoke_async(ctx: FcContext, body: bytes, configured_endpoint: str, *, timeout_s: float = 5.0) -> str:
    """Queue `body` as an asynchronous invocation of the function serving `ctx` (the same name and
    qualifier); returns FC's request id for it."""
    creds = ctx.credentials
    if creds is None:
        raise InvokeFailed(
            "cannot invoke the function: no credentials (give the function a role that may InvokeFunction)"
        )
    if not ctx.function_name:
        raise InvokeFailed("cannot invoke the function: its name is unknown (x-fc-function-name / FC_FUNCTION_NAME)")
    scheme, host = endpoint(ctx, configured_endpoint)
    path = f"/{API_VERSION}/functions/{ctx.function_name}/invocations"
    query = {"qualifier": ctx.qualifier} if ctx.qualifier else {}
    headers = signed_headers(
        "POST",
        host,
        path,
        query,
        body,
        {"content-type": "application/octet-stream", "x-fc-invocation-type": "Async", "x-fc-log-type": "None"},
        creds,
    )
    target = path + ("?" + "&".join(f"{_encode(k)}={_encode(v)}" for k, v in query.items()) if query else "")
    if scheme == "https":
        import notify  # certifi's trust, as for every outbound TLS connection

        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, timeout=timeout_s, context=notify.tls())
    else:
        conn = http.client.HTTPConnection(host, timeout=timeout_s)
    try:
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read(64 * 1024)
        request_id = response.getheader("x-fc-request-id", "")
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        raise InvokeFailed(
            f"FC's API at {host} did not answer the asynchronous invocation: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        conn.close()
    if response.status not in (200, 202):
        try:
            doc = json.loads(answer)
            why = f"{doc.get('Code') or doc.get('code')}: {doc.get('Message') or doc.get('message')}"
        except (ValueError, AttributeError):
            why = answer[:200].decode("utf-8", "replace")
        raise InvokeFailed(f"FC did not take the asynchronous invocation (HTTP {response.status}, {why})")
    return request_id
