"""Who may do what: V1 and V4 signatures (headers and presigned URLs), STS tokens, clock skew."""

from __future__ import annotations

import base64
import calendar
import email.utils
import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from localoss.errors import OssError

MAX_SKEW_S = 15 * 60


@dataclass(frozen=True)
class Account:
    access_key_id: str
    access_key_secret: str
    security_token: str = ""  # set: the key is an STS key and requests must carry this token


# Query keys that are part of a V1 signature's canonical resource (OSS's documented subresources).
V1_SUBRESOURCES = frozenset(
    (
        "acl",
        "uploads",
        "location",
        "cors",
        "logging",
        "website",
        "referer",
        "lifecycle",
        "delete",
        "append",
        "tagging",
        "objectMeta",
        "uploadId",
        "partNumber",
        "security-token",
        "position",
        "img",
        "style",
        "styleName",
        "replication",
        "replicationProgress",
        "replicationLocation",
        "cname",
        "bucketInfo",
        "comp",
        "qos",
        "live",
        "status",
        "vod",
        "startTime",
        "endTime",
        "symlink",
        "x-oss-process",
        "response-content-type",
        "x-oss-traffic-limit",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "udf",
        "udfName",
        "udfImage",
        "udfId",
        "udfImageDesc",
        "udfApplication",
        "udfApplicationLog",
        "restore",
        "callback",
        "callback-var",
        "qosInfo",
        "policy",
        "stat",
        "encryption",
        "versions",
        "versioning",
        "versionId",
        "requestPayment",
        "x-oss-request-payer",
        "sequential",
        "inventory",
        "inventoryId",
        "continuation-token",
        "asyncFetch",
        "worm",
        "wormId",
        "wormExtend",
        "withHashContext",
        "x-oss-enable-md5",
        "x-oss-enable-sha1",
        "x-oss-enable-sha256",
        "x-oss-hash-ctx",
        "x-oss-md5-ctx",
        "transferAcceleration",
        "regionList",
        "cloudboxes",
        "x-oss-ac-source-ip",
        "x-oss-ac-subnet-mask",
        "x-oss-ac-vpc-id",
        "x-oss-ac-forward-allow",
        "metaQuery",
        "resourceGroup",
        "rtc",
        "x-oss-async-process",
        "responseHeader",
        "httpsConfig",
        "publicAccessBlock",
        "accessPoint",
        "accessPointPolicy",
    )
)


# --- signatures --------------------------------------------------------------------------------


def _v4_encode(text: str, keep_slash: bool) -> str:
    safe = "-_.~/" if keep_slash else "-_.~"
    return quote(text, safe=safe)


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


@dataclass
class Request:
    method: str
    bucket: str
    key: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names

    def param(self, name: str) -> str | None:
        for k, v in self.query:
            if k == name:
                return v
        return None

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.query)


class Verifier:
    def __init__(self, accounts: Iterable[Account], region: str, now: Any = time.time) -> None:
        self.accounts = {a.access_key_id: a for a in accounts}
        self.region = region
        self.now = now

    def verify(self, req: Request) -> None:
        auth = req.headers.get("authorization", "")
        query = dict(req.query)
        if not auth and "x-oss-signature" in query:
            self._verify_v4(req, "", presigned=query)
            return
        if not auth and "Signature" in query:
            self._verify_v1_url(req, query)
            return
        if not auth:
            raise OssError(403, "AccessDenied", "You have no right to access this object because of bucket acl.")
        if auth.startswith("OSS4-HMAC-SHA256 "):
            self._verify_v4(req, auth[len("OSS4-HMAC-SHA256 ") :])
        elif auth.startswith("OSS "):
            self._verify_v1(req, auth[4:])
        else:
            raise OssError(400, "InvalidArgument", "Authorization header is invalid.", "0002-00000003")

    def _account(self, key_id: str, req: Request, token: str | None = None) -> Account:
        account = self.accounts.get(key_id)
        if account is None:
            message = "The OSS Access Key Id you provided does not exist in our records."
            raise OssError(403, "InvalidAccessKeyId", message, "0002-00000002", OSSAccessKeyId=key_id)
        token = req.headers.get("x-oss-security-token", "") if token is None else token
        if account.security_token and not token:  # an STS key is not a key without its token
            message = "The OSS Access Key Id you provided does not exist in our records."
            raise OssError(403, "InvalidAccessKeyId", message, "0002-00000003", OSSAccessKeyId=key_id)
        if account.security_token != token:
            raise OssError(403, "InvalidSecurityToken", "The security token you provided is invalid.", "0002-00000012")
        return account

    def _check_time(self, when: float | None) -> None:
        if when is None:
            raise OssError(403, "AccessDenied", "Invalid date in the request: the Date header is missing or bad.")
        if abs(self.now() - when) > MAX_SKEW_S:
            message = "The difference between the request time and the current time is too large."
            raise OssError(403, "RequestTimeTooSkewed", message, "0002-00000504")

    def _verify_v1(self, req: Request, rest: str) -> None:
        key_id, sep, signature = rest.rpartition(":")
        if not sep or not key_id:
            raise OssError(400, "InvalidArgument", "Authorization header is invalid.", "0002-00000003")
        account = self._account(key_id, req)
        date = req.headers.get("x-oss-date") or req.headers.get("date", "")
        parsed = email.utils.parsedate_tz(date) if date else None
        self._check_time(email.utils.mktime_tz(parsed) if parsed else None)
        self._check_v1(req, account, key_id, date, signature)

    def _verify_v1_url(self, req: Request, query: dict[str, str]) -> None:
        """A V1 presigned URL: OSSAccessKeyId, Expires and Signature in the query."""
        key_id, expires, signature = query.get("OSSAccessKeyId", ""), query.get("Expires", ""), query["Signature"]
        account = self._account(key_id, req, query.get("security-token", ""))
        if not expires.isdigit():
            raise OssError(403, "AccessDenied", "Invalid Expires in the presigned URL.")
        if int(expires) < self.now():
            raise OssError(403, "AccessDenied", "Request has expired.", "0002-00000069", Expires=expires)
        self._check_v1(req, account, key_id, expires, signature)

    def _check_v1(self, req: Request, account: Account, key_id: str, when: str, signature: str) -> None:
        """The V1 signature, over the Date header's value or a presigned URL's Expires (`when`)."""
        oss_headers = sorted((k, v) for k, v in req.headers.items() if k.startswith("x-oss-"))
        resource = f"/{req.bucket}/{req.key}" if req.bucket else "/"
        subs = sorted((k, v) for k, v in req.query if k in V1_SUBRESOURCES)
        if subs:
            resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subs)
        string_to_sign = (
            "\n".join([req.method, req.headers.get("content-md5", ""), req.headers.get("content-type", ""), when, ""])
            + "".join(f"{k}:{v}\n" for k, v in oss_headers)
            + resource
        )
        expected = base64.b64encode(
            hmac.new(account.access_key_secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
        ).decode()
        if not hmac.compare_digest(expected, signature):
            raise _signature_mismatch(string_to_sign, signature, key_id)

    def _verify_v4(self, req: Request, rest: str, presigned: dict[str, str] | None = None) -> None:
        """V4 in the Authorization header, or (`presigned`) in the query of a presigned URL."""
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                fields[name] = value
        if presigned is not None:
            if presigned.get("x-oss-signature-version") != "OSS4-HMAC-SHA256":
                raise OssError(400, "InvalidArgument", "x-oss-signature-version must be OSS4-HMAC-SHA256.")
            fields = {
                "Credential": presigned.get("x-oss-credential", ""),
                "Signature": presigned["x-oss-signature"],
            }
            if "x-oss-additional-headers" in presigned:
                fields["AdditionalHeaders"] = presigned["x-oss-additional-headers"]
        try:
            key_id, date, region, product, terminator = fields["Credential"].split("/")
            signature = fields["Signature"]
        except (KeyError, ValueError):
            raise OssError(400, "InvalidArgument", "Authorization header is invalid.", "0002-00000003") from None
        if product != "oss" or terminator != "aliyun_v4_request":
            raise OssError(400, "InvalidArgument", "Invalid credential scope in Authorization header.", "0002-00000204")
        if "AdditionalHeaders" in fields and not fields["AdditionalHeaders"]:
            raise OssError(400, "InvalidArgument", "AdditionalHeaders must not be empty.", "0002-00000209")
        token = presigned.get("x-oss-security-token", "") if presigned is not None else None
        account = self._account(key_id, req, token)
        stamp = presigned.get("x-oss-date", "") if presigned is not None else req.headers.get("x-oss-date", "")
        try:
            when = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            when = None
        if presigned is None:
            self._check_time(when)
        else:
            expires = presigned.get("x-oss-expires", "")
            if when is None or not expires.isdigit() or int(expires) > 7 * 86400:
                raise OssError(400, "InvalidArgument", "x-oss-date or x-oss-expires is invalid.")
            if when + int(expires) < self.now():
                raise OssError(403, "AccessDenied", "Request has expired.", "0002-00000069")
        if stamp[:8] != date:
            raise OssError(403, "SignatureDoesNotMatch", "The credential date does not match x-oss-date.")
        if region != self.region:
            message = f"Invalid signing region {region!r}: this endpoint is {self.region!r}."
            raise OssError(400, "InvalidArgument", message, "0002-00000205")
        payload = "UNSIGNED-PAYLOAD" if presigned is not None else req.headers.get("x-oss-content-sha256", "")
        if payload != "UNSIGNED-PAYLOAD":
            raise OssError(400, "InvalidArgument", "x-oss-content-sha256 must be UNSIGNED-PAYLOAD.", "0002-00000214")
        additional = [h.strip().lower() for h in fields.get("AdditionalHeaders", "").split(";") if h.strip()]
        signed = sorted(
            (k, v)
            for k, v in req.headers.items()
            if k.startswith("x-oss-") or k in ("content-type", "content-md5") or k in additional
        )
        uri = "/" + (f"{req.bucket}/" if req.bucket else "") + req.key
        query = sorted((_v4_encode(k, False), _v4_encode(v, False)) for k, v in req.query if k != "x-oss-signature")
        canonical_request = "\n".join(
            [
                req.method,
                _v4_encode(uri, True),
                "&".join(f"{k}={v}" if v else k for k, v in query),
                "".join(f"{k}:{v}\n" for k, v in signed),
                ";".join(sorted(additional)),
                payload,
            ]
        )
        scope = f"{date}/{region}/oss/aliyun_v4_request"
        string_to_sign = "\n".join(
            ["OSS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
        )
        signing_key = ("aliyun_v4" + account.access_key_secret).encode()
        for part in (date, region, "oss", "aliyun_v4_request"):
            signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise _signature_mismatch(string_to_sign, signature, key_id, CanonicalRequest=canonical_request)


def _signature_mismatch(string_to_sign: str, provided: str, key_id: str, **extra: str) -> OssError:
    return OssError(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and "
        "signing method.",
        "0002-00000040",
        StringToSign=string_to_sign,
        SignatureProvided=provided,
        OSSAccessKeyId=key_id,
        **extra,
    )
