"""`make demo`: fcbuild's whole job on this machine, as FC would drive it.

1. starts the local OSS-compatible server on disk (demo/.state/oss, kept between runs);
2. uploads the sample Vite app (demo/site, with its lockfile) as a .tar.gz source;
3. starts fcbuild (`python fc_runtime.py`, or the binary in FC_RUNTIME_BIN) as FC would,
   with the function's credentials in the environment;
4. sends /initialize and /invoke with FC's headers, prints the result;
5. stops fcbuild through /pre-stop and the OSS server, and says how to browse the site.

A second run finds the previous deploy's manifest and uploads nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from localoss import Account, LocalOss  # noqa: E402

STATE = os.path.join(HERE, ".state")
SITE = os.path.join(HERE, "site")
REGION = "cn-hangzhou"
ACCOUNT = Account("STS.demo-key-id", "demo-secret", "demo-security-token")
SERVE_PORT = 9100
# Outside the repository (a build's git hooks must find no repository above it) and reachable by
# the build users; the same for every run, so that a second run finds its caches.
WORKSPACE_ROOT = os.path.join(tempfile.gettempdir(), "fcbuild-demo-" + hashlib.sha256(ROOT.encode()).hexdigest()[:12])


def pack(folder: str) -> bytes:
    """The project as a GitHub-style archive; the same bytes for the same files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for base, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in ("node_modules", "dist"))
            for name in sorted(files):
                full = os.path.join(base, name)
                info = tar.gettarinfo(full, arcname="fcbuild-demo-site/" + os.path.relpath(full, folder))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(full, "rb") as f:
                    tar.addfile(info, f)
    return buf.getvalue()


def call(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1800)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"{}")
    conn.close()
    return resp.status, data


def start_fcbuild(env: dict[str, str], log_path: str) -> tuple[subprocess.Popen, int]:
    binary = os.environ.get("FC_RUNTIME_BIN")
    argv = [os.path.abspath(binary)] if binary else [sys.executable, os.path.join(ROOT, "fc_runtime.py")]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv + ["0", "--host", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if "listening on" in line:
                    return proc, int(line.rsplit(":", 1)[1].split()[0])
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    sys.exit(f"fcbuild did not start; its log is {log_path}")


def main() -> int:
    os.makedirs(STATE, exist_ok=True)
    with LocalOss(os.path.join(STATE, "oss"), buckets=["src", "site"], accounts=[ACCOUNT], region=REGION) as oss:
        archive = pack(SITE)
        _upload(oss.endpoint, "src", "demo/site.tar.gz", archive)
        print(f"== uploaded the sample Vite app as oss://src/demo/site.tar.gz ({len(archive)} bytes)")

        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "FCBUILD_"))}
        env.update(
            {
                "FC_REGION": REGION,
                "FC_FUNCTION_NAME": "fcbuild-demo",
                "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCOUNT.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCOUNT.access_key_secret,
                "ALIBABA_CLOUD_SECURITY_TOKEN": ACCOUNT.security_token,
                "FCBUILD_OSS_ENDPOINT": oss.endpoint,
                "FCBUILD_WORKSPACE_ROOT": WORKSPACE_ROOT,
            }
        )
        log_path = os.path.join(STATE, "fcbuild.log")
        proc, port = start_fcbuild(env, log_path)
        print(f"== fcbuild is listening on port {port} (log: {os.path.relpath(log_path, ROOT)})")
        fc_headers = {
            "Content-Type": "application/octet-stream",
            "x-fc-function-name": "fcbuild-demo",
            "x-fc-function-memory": "2048",
            "x-fc-function-timeout": "900",
            "x-fc-region": REGION,
        }
        try:
            status, body = call(port, "POST", "/initialize", headers={**fc_headers, "x-fc-request-id": "demo-init"})
            print(f"== POST /initialize -> {status} {json.dumps(body)}")
            request = {
                "source": "oss://src/demo/site.tar.gz",
                "target": {"bucket": "site", "prefix": "demo/"},
                "build": {"env": {"VITE_BUILD_LABEL": "fcbuild demo"}},
            }
            rid = f"demo-{uuid.uuid4().hex[:8]}"
            print(f"== POST /invoke {json.dumps(request)}")
            started = time.monotonic()
            status, result = call(
                port, "POST", "/invoke", json.dumps(request).encode(), {**fc_headers, "x-fc-request-id": rid}
            )
            print(f"== {status} after {time.monotonic() - started:.1f}s:")
            print(json.dumps(result, indent=2, ensure_ascii=False))
            call(port, "GET", "/pre-stop", headers={"x-fc-request-id": "demo-stop"})
        finally:
            if proc.poll() is None:
                proc.terminate()
            code = proc.wait(timeout=90)
        print(f"== fcbuild stopped (exit {code})")
        if status != 200:
            print(f"== the build failed; see {os.path.relpath(log_path, ROOT)}")
            return 1
        files = result["files"]
        print(f"== deployed: {files['uploaded']} files uploaded, {files['skipped']} unchanged and skipped")
        _compare_with_last_run(result)
        print("== to open the site in a browser: make serve-demo, then visit")
        print(f"   http://127.0.0.1:{SERVE_PORT}/ (the prefix served as its own domain would serve it)")
    return 0


def _compare_with_last_run(result: dict) -> None:
    """Print this build's time beside the previous run's: the second run finds the dependency cache."""
    path = os.path.join(STATE, "last-build.json")
    this = {
        "seconds": result["durationSeconds"],
        "install": result["steps"]["install"],
        "cache": result["cache"]["hit"],
    }
    try:
        with open(path, encoding="utf-8") as f:
            last = json.load(f)
    except (OSError, ValueError):
        last = None
    print(f"== this build: {this['seconds']:.1f}s (install {this['install']:.1f}s, dependency cache: {this['cache']})")
    if last:
        print(
            f"== previous run: {last['seconds']:.1f}s (install {last['install']:.1f}s, cache: {last['cache']}); "
            f"this build was {last['seconds'] / this['seconds']:.1f}x as fast"
        )
    else:
        print("== run make demo again: the second build restores node_modules from the dependency cache")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(this, f)


def _upload(endpoint: str, bucket: str, key: str, data: bytes) -> None:
    import oss2

    auth = oss2.StsAuth(ACCOUNT.access_key_id, ACCOUNT.access_key_secret, ACCOUNT.security_token, auth_version="v4")
    oss2.Bucket(auth, endpoint, bucket, region=REGION).put_object(key, data)


if __name__ == "__main__":
    sys.exit(main())
