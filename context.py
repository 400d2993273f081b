"""The per-request FC context: built once from FC's headers, frozen, passed explicitly."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Headers FC sends with every call to a custom runtime (lower-case; lookups are case-insensitive).
HDR_REQUEST_ID = "x-fc-request-id"
HDR_ACCESS_KEY_ID = "x-fc-access-key-id"
HDR_ACCESS_KEY_SECRET = "x-fc-access-key-secret"
HDR_SECURITY_TOKEN = "x-fc-security-token"
# The environment variables that carry the function's credentials (FC 3.0 passes them only there).
CREDENTIAL_VARS = ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN")

# Context field <- (header, environment fallback). FC 3.0 runtimes drop some headers and
# pass the same facts in the environment only, so both are read, the header first.
_FIELD_SOURCES: dict[str, tuple[str, str | None]] = {
    "function_name": ("x-fc-function-name", "FC_FUNCTION_NAME"),
    "handler": ("x-fc-function-handler", "FC_FUNCTION_HANDLER"),
    "memory_mb": ("x-fc-function-memory", "FC_FUNCTION_MEMORY_SIZE"),
    "timeout_s": ("x-fc-function-timeout", "FC_FUNCTION_TIMEOUT"),
    "region": ("x-fc-region", "FC_REGION"),
    "account_id": ("x-fc-account-id", "FC_ACCOUNT_ID"),
    "qualifier": ("x-fc-qualifier", "FC_QUALIFIER"),
    "version_id": ("x-fc-version-id", "FC_FUNCTION_VERSION"),
    "instance_id": ("x-fc-instance-id", "FC_INSTANCE_ID"),
    "service_name": ("x-fc-service-name", "FC_SERVICE_NAME"),
    "log_project": ("x-fc-service-logproject", None),
    "log_store": ("x-fc-service-logstore", None),
    "invocation_type": ("x-fc-invocation-type", None),
    "retry_count": ("x-fc-retry-count", None),
}


@dataclass(frozen=True)
class Credentials:
    """An STS (or plain AccessKey) triple. Never printed: repr shows only whether it is set."""

    access_key_id: str = field(repr=False)
    access_key_secret: str = field(repr=False)
    security_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        kind = "sts" if self.security_token else "ak"
        return f"Credentials(<{kind}, redacted>)"

    def secrets(self) -> tuple[str, ...]:
        """The values that must never appear in a log line or a response."""
        return tuple(v for v in (self.access_key_id, self.access_key_secret, self.security_token) if v)


@dataclass(frozen=True)
class FcContext:
    request_id: str
    function_name: str = ""
    handler: str = ""
    memory_mb: int = 0
    timeout_s: int = 0
    region: str = ""
    account_id: str = ""
    qualifier: str = ""
    version_id: str = ""
    instance_id: str = ""
    service_name: str = ""
    log_project: str = ""
    log_store: str = ""
    invocation_type: str = "Sync"
    retry_count: int = 0
    credentials: Credentials | None = field(default=None, repr=False)
    started_at: float = field(default_factory=time.monotonic, repr=False, compare=False)
    started_wall: float = field(default_factory=time.time, repr=False, compare=False)

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str], environ: Mapping[str, str], *, default_timeout_s: int = 600
    ) -> FcContext:
        """Build the context of one request.

        `headers` is any mapping (an `http.client.HTTPMessage` or a plain dict); names are
        matched case-insensitively. The credential triple comes whole from the headers when
        FC sent `x-fc-access-key-id`, else whole from `ALIBABA_CLOUD_*` in `environ`: the two
        sources are never mixed, since a secret from one with a token from the other signs nothing.
        """
        lower = {k.lower(): v.strip() for k, v in headers.items()}
        values: dict[str, object] = {}
        for name, (header, env_name) in _FIELD_SOURCES.items():
            raw = lower.get(header) or (environ.get(env_name, "") if env_name else "")
            values[name] = raw.strip()
        for name in ("memory_mb", "timeout_s", "retry_count"):
            values[name] = _to_int(str(values[name]))
        if not values["timeout_s"]:
            values["timeout_s"] = default_timeout_s
        values["invocation_type"] = "Async" if str(values["invocation_type"]).lower() == "async" else "Sync"
        return cls(
            request_id=lower.get(HDR_REQUEST_ID) or _local_request_id(),
            credentials=_credentials(lower, environ),
            **values,  # type: ignore[arg-type]
        )

    @property
    def deadline(self) -> float:
        """`time.monotonic()` value at which FC ends this invocation."""
        return self.started_at + self.timeout_s

    def secrets(self) -> tuple[str, ...]:
        return self.credentials.secrets() if self.credentials else ()


def _local_request_id() -> str:
    import uuid  # only for calls that did not come from FC; kept off the start-up path

    return f"local-{uuid.uuid4()}"


def _credentials(headers: Mapping[str, str], environ: Mapping[str, str]) -> Credentials | None:
    if headers.get(HDR_ACCESS_KEY_ID):
        return Credentials(
            headers[HDR_ACCESS_KEY_ID],
            headers.get(HDR_ACCESS_KEY_SECRET, ""),
            headers.get(HDR_SECURITY_TOKEN, ""),
        )
    key_id = environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
    if key_id:
        return Credentials(
            key_id,
            environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
            environ.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""),
        )
    return None


def _to_int(text: str) -> int:
    try:
        return max(0, int(text))
    except ValueError:
        return 0


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """`text` with every secret value replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class KnownSecrets:
    """Every credential value the runtime has seen (its environment's, every request's headers'):
    redacted from every log line, answer and saved file, whichever request printed it. Keeps the
    newest `limit` values (STS credentials rotate; old ones expire)."""

    def __init__(self, limit: int = 256) -> None:
        self._values: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit
        self._snapshot: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            changed = False
            for value in values:
                if value and len(value) >= 4:
                    if value not in self._values:
                        changed = True
                    self._values[value] = None
                    self._values.move_to_end(value)
            while len(self._values) > self._limit:
                self._values.popitem(last=False)
                changed = True
            if changed:  # longest first: a secret that contains another is replaced whole
                self._snapshot = tuple(sorted(self._values, key=len, reverse=True))

    def values(self) -> tuple[str, ...]:
        return self._snapshot
