"""From an upload or a schedule to build requests: FC's OSS and time trigger events, the project's
`fcbuild.json`, and the function's limit on where builds may deploy. Pure: no I/O.

- An OSS trigger's body (`{"events": [...]}`) becomes one build request per created archive; other
  keys are skipped and removals ignored. The target comes from the archive's `fcbuild.json`, else
  the function's FCBUILD_TARGET template (`{bucket}`, `{dir}`, `{name}` of the uploaded key).
- A time trigger's body (`{"triggerName", "triggerTime", "payload"}`) carries a build request as its
  payload (a JSON string).
- `fcbuild.json` at the project's root holds `target`, `build`, `deploy`, `cdn` and `notify`; the
  request wins field by field.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from errors import AccessDenied, InvalidRequest

CONFIG_FILE = "fcbuild.json"
CONFIG_FIELDS = ("target", "build", "deploy", "cdn", "notify", "environments")
ARCHIVES = (".tar.gz", ".tgz", ".zip")
MAX_CONFIG_BYTES = 64 * 1024


def is_oss_event(event: Mapping[str, Any]) -> bool:
    return isinstance(event.get("events"), list) and set(event) == {"events"}


def is_time_trigger(event: Mapping[str, Any]) -> bool:
    return "triggerName" in event and "payload" in event and "source" not in event


def time_trigger_request(event: Mapping[str, Any]) -> dict[str, Any]:
    """The build request a time trigger carries in its payload."""
    payload = event.get("payload")
    if isinstance(payload, dict):
        return dict(payload)
    if not isinstance(payload, str) or not payload.strip():
        raise InvalidRequest("payload: a time trigger's payload must be the build request, as JSON")
    try:
        request = json.loads(payload)
    except ValueError as exc:
        raise InvalidRequest(f"payload: not JSON ({exc})") from None
    if not isinstance(request, dict):
        raise InvalidRequest("payload: the build request must be a JSON object")
    return request


def oss_event_sources(event: Mapping[str, Any]) -> list[tuple[dict[str, Any] | None, str]]:
    """For each event: ({"bucket", "key"} of an archive to build, "") or (None, why it is skipped)."""
    out: list[tuple[dict[str, Any] | None, str]] = []
    for i, item in enumerate(event["events"]):
        if not isinstance(item, dict):
            raise InvalidRequest(f"events[{i}]: expected an object")
        name = str(item.get("eventName", ""))
        oss = item.get("oss") if isinstance(item.get("oss"), dict) else {}
        bucket = (oss.get("bucket") or {}).get("name") if isinstance(oss.get("bucket"), dict) else None
        key = (oss.get("object") or {}).get("key") if isinstance(oss.get("object"), dict) else None
        if not isinstance(bucket, str) or not isinstance(key, str):
            raise InvalidRequest(f"events[{i}]: not an OSS event (oss.bucket.name and oss.object.key)")
        key = unquote(key)  # OSS URL-encodes the key in its event notifications
        if not name.startswith("ObjectCreated:"):
            out.append((None, f"{name or 'an event'} of oss://{bucket}/{key} is not a creation: ignored"))
        elif not key.lower().endswith(ARCHIVES):
            out.append((None, f"oss://{bucket}/{key} is not a .tar.gz, .tgz or .zip archive: skipped"))
        else:
            out.append(({"bucket": bucket, "key": key}, ""))
    return out


def target_from_template(template: str, bucket: str, key: str) -> str:
    """FCBUILD_TARGET with `{bucket}`, `{dir}` (the key's folder) and `{name}` (its file name without
    the archive suffix) of the uploaded key, e.g. `oss://my-site/{name}/`."""
    folder, file = posixpath.split(key)
    name = file
    for suffix in ARCHIVES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    try:
        return template.format(bucket=bucket, dir=folder, name=name)
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidRequest(f"FCBUILD_TARGET {template!r}: {exc} (use {{bucket}}, {{dir}} and {{name}})") from None


def parse_config(data: bytes) -> dict[str, Any]:
    """`fcbuild.json`: an object with only the fields a request may put there."""
    if len(data) > MAX_CONFIG_BYTES:
        raise InvalidRequest(f"{CONFIG_FILE}: over {MAX_CONFIG_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{CONFIG_FILE}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidRequest(f"{CONFIG_FILE}: expected a JSON object")
    unknown = sorted(set(doc) - set(CONFIG_FIELDS))
    if unknown:
        raise InvalidRequest(f"{CONFIG_FILE}: {unknown[0]!r}: unknown field (allowed: {', '.join(CONFIG_FIELDS)})")
    return doc


def merge_config(request: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The request over the file, field by field (inside `build` and `deploy`, key by key). Also
    which settings came from where: {"file": [...], "request": [...]}."""
    merged: dict[str, Any] = dict(request)
    came: dict[str, list[str]] = {"file": [], "request": []}
    for field in CONFIG_FIELDS:
        if field not in config:
            continue
        if field in ("build", "deploy") and isinstance(config[field], dict):
            mine = request.get(field) if isinstance(request.get(field), dict) else {}
            combined = dict(config[field])
            for key, value in mine.items():
                combined[key] = value
                came["request"].append(f"{field}.{key}")
            came["file"].extend(f"{field}.{key}" for key in config[field] if key not in mine)
            merged[field] = combined
        elif field in request:
            came["request"].append(field)
        else:
            merged[field] = config[field]
            came["file"].append(field)
    for field in request:
        if field not in CONFIG_FIELDS or field not in config:
            came["request"].append(field)
    came["request"] = sorted(set(came["request"]))
    came["file"] = sorted(set(came["file"]))
    return merged, came


def parse_allowed(raw: str) -> tuple[str, ...]:
    """FCBUILD_ALLOWED_TARGETS: `oss://bucket/prefix/` patterns (globs), separated by commas or spaces."""
    patterns = tuple(p for p in raw.replace(",", " ").split() if p)
    for pattern in patterns:
        if not pattern.startswith("oss://"):
            raise ValueError(f"FCBUILD_ALLOWED_TARGETS: {pattern!r} is not an oss://bucket/prefix/ pattern")
    return patterns


def check_allowed(bucket: str, prefix: str, allowed: Sequence[str]) -> None:
    """Whatever a request or a config file says, a build deploys only where the function allows."""
    if not allowed:
        return
    url = f"oss://{bucket}/{prefix}"
    if not any(target_matches(pattern, url) for pattern in allowed):
        raise AccessDenied(f"target {url} is not one that FCBUILD_ALLOWED_TARGETS allows ({', '.join(allowed)})")


def target_matches(pattern: str, url: str) -> bool:
    """`oss://bucket/prefix/` pattern against a target, by whole path segments: the bucket, then each
    folder, each one a glob (`*` never crosses a `/`); a pattern allows its folder and everything under
    it. `oss://site/shop` allows `oss://site/shop/` and `oss://site/shop/en/`, never `oss://site/shop-evil/`;
    `oss://site` never allows `oss://site2/`."""
    want = [s for s in pattern[len("oss://") :].split("/") if s]
    have = [s for s in url[len("oss://") :].split("/") if s]
    return bool(want) and len(want) <= len(have) and all(map(fnmatch.fnmatchcase, have, want))
