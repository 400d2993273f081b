"""The function invoking itself, asynchronously, through FC's InvokeFunction API (2023-03-30).

A webhook is answered at once and the build runs as an asynchronous invocation: FC queues it, retries
it (maxAsyncRetryAttempts), sends it to the configured destinations and applies the function's
timeout, and the instance that answered the webhook may be frozen without harm. The official SDK
(alibabacloud-fc20230330) is imported here only, on the first webhook: the runtime's start does not
pay for it (its import takes ~0.3 s; see bench/startup_bench.py).

The endpoint is FC's internal one for the function's account and region
(`<account>.<region>-internal.fc.aliyuncs.com`), or FCBUILD_FC_ENDPOINT (`https://host[:port]` or
`http://...`, e.g. a local stand-in).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from context import FcContext
from errors import FcBuildError

_CLIENTS: dict[tuple[str, ...], Any] = {}
_LOCK = threading.Lock()


class InvokeFailed(FcBuildError):
    """FC did not take the asynchronous invocation; nothing was queued."""

    error_type = "InvokeFailed"


def endpoint(ctx: FcContext, configured: str) -> tuple[str, str]:
    """(protocol, host[:port]) of FC's API for this function."""
    if configured:
        parts = urlsplit(configured if "://" in configured else "https://" + configured)
        return parts.scheme or "https", parts.netloc
    if not (ctx.account_id and ctx.region):
        raise InvokeFailed(
            "cannot invoke the function: its account id and region are unknown (set FCBUILD_FC_ENDPOINT)"
        )
    return "https", f"{ctx.account_id}.{ctx.region}-internal.fc.aliyuncs.com"


def warm_up() -> None:
    """Import the SDK (in the background, once webhooks are configured)."""
    from alibabacloud_fc20230330 import client, models  # noqa: F401
    from alibabacloud_tea_openapi import models as open_models  # noqa: F401
    from alibabacloud_tea_util import models as util_models  # noqa: F401


def invoke_async(ctx: FcContext, body: bytes, configured_endpoint: str, *, timeout_s: float = 5.0) -> str:
    """Queue `body` as an asynchronous invocation of the function serving `ctx` (the same name and
    qualifier); returns FC's request id for it."""
    from alibabacloud_fc20230330 import models
    from alibabacloud_fc20230330.client import Client
    from alibabacloud_tea_openapi import models as open_models
    from alibabacloud_tea_util import models as util_models

    creds = ctx.credentials
    if creds is None:
        raise InvokeFailed(
            "cannot invoke the function: no credentials (give the function a role that may InvokeFunction)"
        )
    if not ctx.function_name:
        raise InvokeFailed("cannot invoke the function: its name is unknown (x-fc-function-name / FC_FUNCTION_NAME)")
    protocol, host = endpoint(ctx, configured_endpoint)
    key = (protocol, host, ctx.region, creds.access_key_id, creds.access_key_secret, creds.security_token)
    with _LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            _CLIENTS.clear()  # credentials rotate: keep the current client only
            config = open_models.Config(
                access_key_id=creds.access_key_id,
                access_key_secret=creds.access_key_secret,
                security_token=creds.security_token or None,
                endpoint=host,
                protocol=protocol,
                region_id=ctx.region or None,
                connect_timeout=int(timeout_s * 1000),
                read_timeout=int(timeout_s * 1000),
            )
            client = _CLIENTS[key] = Client(config)
    headers = models.InvokeFunctionHeaders(x_fc_invocation_type="Async", x_fc_log_type="None")
    request = models.InvokeFunctionRequest(body=body, qualifier=ctx.qualifier or None)
    runtime = util_models.RuntimeOptions(
        connect_timeout=int(timeout_s * 1000), read_timeout=int(timeout_s * 1000), autoretry=True, max_attempts=2
    )
    try:
        response = client.invoke_function_with_options(ctx.function_name, request, headers, runtime)
    except Exception as exc:  # the SDK raises its own types (TeaException, UnretryableException)
        code = getattr(exc, "code", "") or type(exc).__name__
        message = getattr(exc, "message", "") or str(exc)
        raise InvokeFailed(f"FC did not take the asynchronous invocation ({code}): {message[:300]}") from None
    status = getattr(response, "status_code", 0)
    if status not in (200, 202):
        raise InvokeFailed(f"FC answered the asynchronous invocation with HTTP {status}")
    response_headers = {k.lower(): v for k, v in (getattr(response, "headers", None) or {}).items()}
    return str(response_headers.get("x-fc-request-id", ""))
