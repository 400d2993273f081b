"""OSS's naming rules for buckets and object names, checked before anything is sent.

Stdlib only and cheap to import: the runtime checks its own settings with it before the port opens.
"""

from __future__ import annotations

from errors import InvalidRequest

MAX_KEY_BYTES = 1023  # OSS's limit on an object name
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def check_region(region: str, where: str) -> str:
    """An Alibaba Cloud region id (`cn-hangzhou`, `ap-southeast-1`, `cn-shanghai-finance-1`): it
    becomes part of an endpoint's host name, so nothing else may pass (`x@127.0.0.1:9/` would make it
    another host)."""
    parts = region.split("-")
    if not (
        len(region) <= 40
        and 2 <= len(parts) <= 5
        and len(parts[0]) == 2
        and all(p and p.isascii() and p.isalnum() and p.islower() or p.isdigit() for p in parts)
    ):
        raise InvalidRequest(f"{where}: {region[:80]!r} is not a region id (such as cn-hangzhou)")
    return region


def check_bucket(bucket: str, where: str) -> str:
    """3-63 characters of a-z, 0-9 and -, starting and ending with a letter or digit."""
    if not (3 <= len(bucket) <= 63 and set(bucket) <= _BUCKET_CHARS and "-" not in (bucket[0], bucket[-1])):
        raise InvalidRequest(
            f"{where}: {bucket[:80]!r} is not a valid OSS bucket name (3-63 of a-z, 0-9 and -, starting and ending "
            "with a letter or digit)"
        )
    return bucket


def check_key(key: str, where: str, *, room: int = 0) -> str:
    """An object name or prefix as OSS takes it and fcbuild can use it: UTF-8 of at most 1,023 bytes
    (less `room` for what goes after it), no control character, no leading /, no `..` segment."""
    if not key:
        raise InvalidRequest(f"{where}: must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest(f"{where}: not valid Unicode (a lone surrogate)") from None
    if size > MAX_KEY_BYTES - room:
        extra = f" (OSS allows {MAX_KEY_BYTES}; {room} are kept for the site's own paths)" if room else ""
        raise InvalidRequest(f"{where}: {size} bytes of UTF-8, over {MAX_KEY_BYTES - room}{extra}")
    control = first_control(key)
    if control >= 0:
        raise InvalidRequest(f"{where}: has a control character ({key[control]!r} at {control})")
    if key.startswith("/"):
        raise InvalidRequest(f"{where}: must not start with /")
    if ".." in key.split("/"):
        raise InvalidRequest(f"{where}: must not have a '..' segment")
    return key


def first_control(text: str) -> int:
    """The index of the first control character (U+0000-U+001F, U+007F) in `text`, or -1."""
    for i, ch in enumerate(text):
        if ch < " " or ch == "\x7f":
            return i
    return -1
