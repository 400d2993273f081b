"""A strict OSS-compatible server on local disk, for fcbuild's tests and demo. Standard library only.

It checks what real OSS checks (V1 and V4 signatures, STS tokens, clock skew, Content-MD5,
multipart rules), answers with OSS's error XML, and sends the CRC64 headers that oss2
verifies, so that a client passing against it has really been checked. It shares no code
with fcbuild's client: signatures, CRC64 and MD5 checks are computed here independently.

Requests are path-style: `http://HOST:PORT/<bucket>/<url-encoded key>`. Stored objects are
also served to a browser without signing at `/_site/<bucket>/<path>`, with `index.html` for
paths ending in `/`, like OSS static website hosting.

    python -m localoss --root DIR [--host H] [--port P] [--bucket NAME ...]
                          [--access-key-id ID --access-key-secret SECRET [--security-token T]]

For tests, the demo and benchmarks: `from localoss import LocalOss, Account`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from localoss.crc import crc64, crc64_combine
from localoss.faults import FaultRule, Faults
from localoss.server import SITE_PREFIX, OssServer
from localoss.signing import Account
from localoss.website import Website

__all__ = ["Account", "FaultRule", "Faults", "LocalOss", "OssServer", "Website", "crc64", "crc64_combine"]


class LocalOss:
    """Run the server in a background thread on a free port (for tests and the demo).

    with LocalOss(root, buckets=["src"], accounts=[Account("id", "secret")]) as oss:
        oss.endpoint  # http://127.0.0.1:PORT
    """

    def __init__(
        self,
        root: str,
        *,
        buckets: Iterable[str] = (),
        accounts: Iterable[Account] = (),
        region: str = "cn-hangzhou",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        domain: str = "",
        website: Website | None = None,
    ) -> None:
        self.server = OssServer(
            (host, port), root, accounts, region=region, faults=faults, domain=domain, website=website
        )
        for bucket in buckets:
            self.server.store.create_bucket(bucket)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def site_url(self, bucket: str, path: str = "") -> str:
        return f"{self.endpoint}{SITE_PREFIX}{bucket}/{path}"

    def __enter__(self) -> LocalOss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
