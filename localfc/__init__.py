"""A local stand-in for Function Compute's InvokeFunction API (2023-03-30), for tests and the demo.

It checks what FC checks (the ACS3-HMAC-SHA256 signature of every request, written from the API's
signature documentation and sharing nothing with the SDK that signs, the body's digest, the date,
the STS token, nonces used once) and then calls a runtime's `POST /invoke` the way FC does: with
FC's headers and the body as `application/octet-stream`, at once for `Sync` and in the background
for `Async` (answered 202 first). `GET /_standin/invocations` lists what it invoked and how each
ended.
"""

from localfc.server import FcStandIn, serve  # noqa: F401
