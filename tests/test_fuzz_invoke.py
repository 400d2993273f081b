"""A seeded fuzzer against the real process: 10,000 /invoke bodies (random bytes, random JSON with
deep nesting and huge numbers, and valid build requests with one field replaced by something
hostile). Every answer must be a typed function error other than Internal, and the server must
stay up. No credentials are sent, so a body that is a valid request ends at AccessDenied before any
download; the slowest answer is printed."""

from __future__ import annotations

import json
import random
import time

import pytest

from tests.runtime_proc import start_runtime

BODIES = 10_000
SEED = 20261128
TYPED = {"InvalidRequest", "AccessDenied"}
VALID = {
    "source": {"bucket": "my-sources", "key": "shop/web.tar.gz"},
    "target": {"bucket": "my-site", "prefix": "shop/"},
    "build": {
        "install": ["npm", "ci"],
        "command": "npm run build",
        "output_dir": "dist",
        "env": {"MODE": "production"},
        "node_version": "20",
        "timeout_s": 900,
        "registry": "https://registry.example.com",
    },
    "deploy": {"cache_control": [{"pattern": "*.png", "value": "public, max-age=60"}], "keep_releases": 3},
    "cdn": {"domains": ["www.example.com"], "scheme": "https", "path": "shop/"},
}
NASTY_STRINGS = [
    "",
    "/",
    "..",
    "../..",
    "a/../b",
    "\x00",
    "a\nb",
    "\r\n",
    "\x7f",
    "\ud800",
    "é" * 600,
    "x" * 1100,
    "UPPER",
    "-bad-",
    "ab",
    "oss://",
    "oss://bucket",
    "oss://b/../k.tar.gz",
    "oss://my-sources/x.tar.gz",
    "*",
    "café.tgz",
    "\u202e",
    " ",
    "a" * 70,
]


def nasty(rng: random.Random, depth: int = 0):  # type: ignore[no-untyped-def]
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice(NASTY_STRINGS)
    if kind == 1:
        return rng.choice([0, -1, 1, 2**63, -(2**63), 10**30, 3.5, 1e308, -0.0])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(1, 40)))
    if kind == 4 and depth < 4:
        return [nasty(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if kind == 5 and depth < 4:
        return {rng.choice(NASTY_STRINGS + ["bucket", "key", "prefix"]): nasty(rng, depth + 1) for _ in range(3)}
    if kind == 6:
        return rng.choice(["npm", "sh -c", "\x00rm", "a" * 5000])
    return rng.choice(NASTY_STRINGS)


def mutate(rng: random.Random) -> dict:
    doc = json.loads(json.dumps(VALID))
    paths = []

    def walk(node, path):  # type: ignore[no-untyped-def]
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append(path + [k])
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append(path + [i])
                walk(v, path + [i])

    walk(doc, [])
    for _ in range(rng.randrange(1, 3)):
        path = rng.choice(paths)
        parent = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            if rng.random() < 0.15 and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = nasty(rng)
        except (KeyError, IndexError, TypeError):
            pass
    if rng.random() < 0.1:
        doc[rng.choice(NASTY_STRINGS)] = 1
    return doc


def body(rng: random.Random) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if kind == 1:
        depth = rng.choice([10, 100, 1000, 5000, 50_000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        return (opener * depth + "1" + closer * depth).encode()
    if kind == 2:
        digits = "9" * rng.choice([30, 4301, 10_000])
        return f'{{"source": {digits}, "target": "x", "n": -{digits}.5e3}}'.encode()
    if kind == 3:
        return rng.choice([b"NaN", b'{"a": Infinity}', b"-", b"1e99999", b'"\\ud800"', b"{" * 3, b"\xef\xbb\xbf{}"])
    if kind == 4:
        return json.dumps(nasty(rng)).encode()
    return json.dumps(mutate(rng)).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def runtime():
    rt = start_runtime({"FCBUILD_OSS_REGION": "cn-hangzhou"})
    yield rt
    rt.kill()


def test_ten_thousand_fuzzed_bodies_get_typed_answers(runtime):
    rng = random.Random(SEED)
    seen: dict[str, int] = {}
    slowest = (0.0, b"")
    for i in range(BODIES):
        data = body(rng)
        started = time.perf_counter()
        resp = runtime.invoke(data, request_id=f"fuzz-{i}", timeout=30)
        took = time.perf_counter() - started
        if took > slowest[0]:
            slowest = (took, data[:80])
        assert resp.status == 404 and resp.headers["x-fc-status"] == "404", (data[:200], resp.body[:300])
        error = resp.json()
        assert error["errorType"] in TYPED, (data[:200], error)
        seen[error["errorType"]] = seen.get(error["errorType"], 0) + 1
    assert runtime.request("GET", "/health").json()["status"] == "ok"
    assert seen.get("AccessDenied", 0) > 0 and seen.get("InvalidRequest", 0) > 0  # both kinds were reached
    assert "Traceback" not in runtime.output()
    print(f"\n{BODIES} bodies: {seen}; slowest answer {slowest[0] * 1000:.1f} ms for {slowest[1]!r}")
