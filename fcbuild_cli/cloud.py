"""The user's Alibaba Cloud: credentials from the default chain, OSS through oss2, FC through its SDK."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any


class UsageError(Exception):
    """Something to set or fix before the command can run: one line saying what (exit 2)."""


@dataclass(frozen=True)
class Creds:
    access_key_id: str
    access_key_secret: str
    security_token: str = ""


def credentials(profile: str = "") -> Creds:
    """The Alibaba Cloud default credential chain: ALIBABA_CLOUD_* variables, the profile `aliyun
    configure` wrote in ~/.aliyun/config.json (`--profile`, else ALIBABA_CLOUD_PROFILE, else its
    current one), then an ECS/FC RAM role."""
    if profile:  # read when the package is first imported
        os.environ["ALIBABA_CLOUD_PROFILE"] = profile
    from alibabacloud_credentials.client import Client
    from alibabacloud_credentials.exceptions import CredentialException

    try:
        got = Client().get_credential()
    except (CredentialException, OSError, ValueError) as exc:
        raise UsageError(
            "no Alibaba Cloud credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, "
            f"run `aliyun configure`, or pass --profile ({type(exc).__name__})"
        ) from None
    return Creds(got.access_key_id, got.access_key_secret, got.security_token or "")


def oss_bucket(creds: Creds, bucket: str, region: str, endpoint: str) -> Any:
    import oss2

    auth = (
        oss2.StsAuth(creds.access_key_id, creds.access_key_secret, creds.security_token, auth_version="v4")
        if creds.security_token
        else oss2.AuthV4(creds.access_key_id, creds.access_key_secret)
    )
    return oss2.Bucket(auth, endpoint or f"https://oss-{region}.aliyuncs.com", bucket, region=region)


class Function:
    """One function, invoked through FC's API (2023-03-30) with the official SDK."""

    def __init__(self, creds: Creds, name: str, region: str, endpoint: str, account_id: str) -> None:
        from alibabacloud_fc20230330.client import Client
        from alibabacloud_tea_openapi import models as open_models

        if not endpoint:
            if not account_id:
                raise UsageError(
                    "FC endpoint needs the account id: --account-id, ALIBABA_CLOUD_ACCOUNT_ID or deploy.account_id"
                )
            endpoint = f"https://{account_id}.{region}.fc.aliyuncs.com"
        protocol, _, host = endpoint.partition("://") if "://" in endpoint else ("https", "", endpoint)
        config = open_models.Config(
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret,
            security_token=creds.security_token or None,
            endpoint=host.rstrip("/"),
            protocol=protocol,
            region_id=region,
            read_timeout=24 * 3600 * 1000,
            connect_timeout=10_000,
        )
        self.client, self.name = Client(config), name

    def invoke(self, event: dict[str, Any], *, asynchronous: bool = False) -> tuple[str, Any]:
        """(FC's request id, the function's answer: a dict, or None for an asynchronous call)."""
        from alibabacloud_fc20230330 import models
        from alibabacloud_tea_util import models as util_models

        headers = models.InvokeFunctionHeaders(x_fc_invocation_type="Async" if asynchronous else "Sync")
        request = models.InvokeFunctionRequest(body=json.dumps(event).encode())
        runtime = util_models.RuntimeOptions(read_timeout=24 * 3600 * 1000, connect_timeout=10_000)
        try:
            response = self.client.invoke_function_with_options(self.name, request, headers, runtime)
        except Exception as exc:  # the SDK's own exception types
            message = getattr(exc, "message", "") or str(exc)
            raise UsageError(f"FC refused the invocation of {self.name}: {message.splitlines()[0][:300]}") from None
        request_id = {k.lower(): v for k, v in (response.headers or {}).items()}.get("x-fc-request-id", "")
        if asynchronous:
            return request_id, None
        body = response.body.read() if hasattr(response.body, "read") else response.body
        try:
            return request_id, json.loads(body or b"{}")
        except ValueError:
            return request_id, {"errorType": "Internal", "errorMessage": (body or b"")[:500].decode("utf-8", "replace")}
