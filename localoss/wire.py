"""The protocol's constants and small helpers, shared by the server and its operations."""

from __future__ import annotations

from urllib.parse import quote

SITE_PREFIX = "/_site/"
OWNER_ID = "1234567890123456"  # the account that owns every bucket here
STATS_PATH = "/_stats"  # unsigned: request counts per operation, for benchmarks
MIN_PART_SIZE = 100 * 1024
MAX_PART_NUMBER = 10_000
MAX_DELETE_KEYS = 1000
CHUNK = 1 << 20


class _Reset(Exception):
    """Fault injection decided to reset this connection."""


def _list_page(
    keys: list[str], prefix: str, delimiter: str, marker: str, max_keys: int
) -> tuple[list[str], list[str], bool, str]:
    contents: list[str] = []
    prefixes: list[str] = []
    last = ""
    marker_bytes = marker.encode()
    for key in keys:
        if not key.startswith(prefix) or key.encode() <= marker_bytes:
            continue
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                if common == marker or (prefixes and prefixes[-1] == common):
                    continue
                if len(contents) + len(prefixes) == max_keys:
                    return contents, prefixes, True, last
                prefixes.append(common)
                last = common
                continue
        if len(contents) + len(prefixes) == max_keys:
            return contents, prefixes, True, last
        contents.append(key)
        last = key
    return contents, prefixes, False, last


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end) inclusive; "unsatisfiable"; or None for no (or an ignored, malformed) Range."""
    if not header or not header.startswith("bytes="):
        return None
    first = header[len("bytes=") :].split(",")[0].strip()
    start_s, sep, end_s = first.partition("-")
    if not sep:
        return None
    try:
        if not start_s:
            n = int(end_s)
            if n <= 0:
                return None
            return (max(0, size - n), size - 1) if size else "unsatisfiable"
        start = int(start_s)
        end = int(end_s) if end_s else size - 1
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, min(end, size - 1)


def _encode(text: str, url: bool) -> str:
    return quote(text, safe="/") if url else text
