"""CDN cache refresh after a deploy, through Alibaba Cloud CDN's RefreshObjectCaches.

Uses the CDN SDK (aliyun-python-sdk-cdn on aliyunsdkcore), imported only when a build asks for
a refresh. A refresh that fails is reported in the result; it never undoes the deploy.
"""

from __future__ import annotations

import json
import logging
import sys
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from context import Credentials, redact

logger = logging.getLogger(__name__)
MAX_URLS_PER_CALL = 1000  # RefreshObjectCaches' limit; the default daily quota is 10,000 URLs
DEFAULT_REGION = "cn-hangzhou"


@dataclass
class RefreshReport:
    urls: int = 0
    refreshed: int = 0
    task_ids: list[str] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"urls": self.urls, "refreshed": self.refreshed, "taskIds": self.task_ids}
        if self.error:
            doc["error"] = self.error
        return doc


def refresh_urls_for(paths: Iterable[str], domains: Sequence[str], scheme: str, url_prefix: str) -> list[str]:
    """The URLs to refresh for deployed `paths` (pure): one per domain, and a folder URL for each index.html."""
    urls: list[str] = []
    for path in sorted(set(paths)):
        forms = [path]
        if path == "index.html" or path.endswith("/index.html"):
            forms.append(path[: -len("index.html")])
        for domain in domains:
            for form in forms:
                urls.append(f"{scheme}://{domain}/{quote(url_prefix + form, safe='/~!$&()*+,;=:@')}")
    return urls


def refresh(
    credentials: Credentials, urls: Sequence[str], *, region: str = "", endpoint: str = "", log: Any = logger
) -> RefreshReport:
    """Refresh `urls` in batches of 1000. `endpoint` (scheme://host[:port]) overrides the CDN API's."""
    report = RefreshReport(urls=len(urls))
    if not urls:
        return report
    try:
        client, request_class, exceptions = _sdk(credentials, region or DEFAULT_REGION)
    except ImportError as exc:
        report.error = f"the CDN SDK is not available: {exc}"
        return report
    for start in range(0, len(urls), MAX_URLS_PER_CALL):
        batch = urls[start : start + MAX_URLS_PER_CALL]
        request = refresh_request(request_class, batch, endpoint)
        try:
            answer = json.loads(client.do_action_with_exception(request))
        except exceptions.ServerException as exc:
            code = exc.get_error_code()
            quota = "quota" in code.lower()
            what = "the daily refresh quota is used up" if quota else "the CDN refused the refresh"
            report.error = redact(
                f"{what} after {report.refreshed} of {len(urls)} URLs ({code}, request id {exc.get_request_id()}): "
                f"{exc.get_error_msg()}",
                credentials.secrets(),
            )
            break
        except exceptions.ClientException as exc:
            report.error = redact(f"the CDN API could not be reached: {exc.get_error_msg()}", credentials.secrets())
            break
        report.refreshed += len(batch)
        report.task_ids.append(str(answer.get("RefreshTaskId", "")))
    if report.error:
        log.warning("CDN refresh: %s", report.error)
    else:
        log.info("CDN refresh of %d URLs submitted (tasks %s)", report.refreshed, ", ".join(report.task_ids))
    return report


def refresh_request(request_class: Any, batch: Sequence[str], endpoint: str = "") -> Any:
    """One RefreshObjectCaches call for `batch`, over HTTPS: the SDK's default is plain HTTP, which
    would carry the AccessKeyId and STS token in the clear. Only an `endpoint` that says http://
    (a local test endpoint) is called without TLS."""
    from aliyunsdkcore.http import protocol_type  # the SDK compares these by identity

    request = request_class()
    request.set_ObjectPath("\n".join(batch))
    request.set_ObjectType("File")
    request.set_accept_format("json")
    parts = urlsplit(endpoint)
    if endpoint:
        request.set_endpoint(parts.netloc)
    request.set_protocol_type(protocol_type.HTTP if parts.scheme.lower() == "http" else protocol_type.HTTPS)
    return request


def _sdk(credentials: Credentials, region: str) -> tuple[Any, Any, Any]:
    _without_rsa_signing()
    from aliyunsdkcdn.request.v20180510.RefreshObjectCachesRequest import RefreshObjectCachesRequest
    from aliyunsdkcore.acs_exception import exceptions
    from aliyunsdkcore.auth.credentials import AccessKeyCredential, StsTokenCredential
    from aliyunsdkcore.client import AcsClient

    if credentials.security_token:
        credential: Any = StsTokenCredential(
            credentials.access_key_id, credentials.access_key_secret, credentials.security_token
        )
    else:
        credential = AccessKeyCredential(credentials.access_key_id, credentials.access_key_secret)
    client = AcsClient(region_id=region, credential=credential, timeout=30, connect_timeout=10)
    return client, RefreshObjectCachesRequest, exceptions


def _without_rsa_signing() -> None:
    """aliyunsdkcore imports `cryptography` (14 MB of compiled code, loaded at every start of the
    frozen binary) only for its RSA key-pair signer, which fcbuild never uses. A placeholder stands
    in for that module; using RSA signing would fail loudly."""
    name = "aliyunsdkcore.auth.algorithm.sha_hmac256"
    if name in sys.modules:
        return
    module = types.ModuleType(name)

    def unavailable(*args: object, **kwargs: object) -> Any:
        raise NotImplementedError("RSA key-pair signing is not loaded in fcbuild")

    module.get_sign_string = unavailable  # type: ignore[attr-defined]
    module.get_signer_name = lambda: "SHA256withRSA"  # type: ignore[attr-defined]
    module.get_signer_version = lambda: "1.0"  # type: ignore[attr-defined]
    module.get_signer_type = lambda: ""  # type: ignore[attr-defined]
    sys.modules[name] = module
