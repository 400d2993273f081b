"""`make demo`: fcbuild's whole job on this machine, as FC would drive it.

1. starts the local OSS-compatible server on disk (demo/.state/oss, kept between runs);
2. starts fcbuild (`python fc_runtime.py`, or the binary in FC_RUNTIME_BIN) as FC would,
   with the function's credentials in the environment, and sends /initialize;
3. runs `fcbuild deploy demo/site ...` (the command a user types) against a local stand-in for FC's
   API: it packs the sample Vite app, uploads it, and FC's stand-in invokes the runtime; prints the result;
4. stops fcbuild through /pre-stop and the OSS server, and says how to browse the site.

A second run finds the archive already uploaded and the previous deploy's manifest, and uploads nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import localfc  # noqa: E402
from localoss import Account, LocalOss  # noqa: E402

STATE = os.path.join(HERE, ".state")
SITE = os.path.join(HERE, "site")
REGION = "cn-hangzhou"
ACCOUNT = Account("STS.demo-key-id", "demo-secret", "demo-security-token")
SERVE_PORT = 9100
# Outside the repository (a build's git hooks must find no repository above it) and reachable by
# the build users; the same for every run, so that a second run finds its caches.
WORKSPACE_ROOT = os.path.join(tempfile.gettempdir(), "fcbuild-demo-" + hashlib.sha256(ROOT.encode()).hexdigest()[:12])


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
            # What a user types: the fcbuild command, here against a local stand-in for FC's API that
            # checks its signature and then calls /invoke as FC would.
            fc = localfc.serve(
                address=("127.0.0.1", 0),
                access_key_id=ACCOUNT.access_key_id,
                access_key_secret=ACCOUNT.access_key_secret,
                security_token=ACCOUNT.security_token,
                runtime=f"127.0.0.1:{port}",
                functions=("fcbuild-demo",),
            )
            argv = ["deploy", SITE, "--target", "oss://site/demo/", "--source", "oss://src/demo/"]
            argv += [
                "--function",
                "fcbuild-demo",
                "--region",
                REGION,
                "--env",
                "VITE_BUILD_LABEL=fcbuild demo",
                "--json",
            ]
            shown = [os.path.relpath(a, ROOT) if a == SITE else a for a in argv]
            print(f"== fcbuild {' '.join(a if ' ' not in a else repr(a) for a in shown)}")
            cli_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "FCBUILD_"))},
                "PYTHONPATH": ROOT,
                "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCOUNT.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCOUNT.access_key_secret,
                "ALIBABA_CLOUD_SECURITY_TOKEN": ACCOUNT.security_token,
                "FCBUILD_OSS_ENDPOINT": oss.endpoint,
                "FCBUILD_FC_ENDPOINT": f"http://127.0.0.1:{fc.server_address[1]}",
            }
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "fcbuild_cli", *argv], env=cli_env, stdout=subprocess.PIPE, text=True
            )
            fc.shutdown()
            status = 200 if done.returncode == 0 else done.returncode
            result = json.loads(done.stdout) if done.stdout.strip() else {}
            print(f"== exit {done.returncode} after {time.monotonic() - started:.1f}s:")
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


if __name__ == "__main__":
    sys.exit(main())
