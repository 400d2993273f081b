"""`fcbuild dev [DIR]`: the whole pipeline on this machine, with no cloud account.

It starts the local OSS-compatible server (on disk, kept between runs, so the caches are warm the
second time) and the fcbuild runtime from this installation, packs DIR exactly as `fcbuild deploy`
does, has the runtime build and deploy it through `/invoke` with FC's headers (the same code FC
runs: the same isolation when run as root, the same dependency cache), and serves the site at
`http://127.0.0.1:PORT/` as a CDN in front of OSS would: index documents, and for a single-page app
(the framework table says which) every missing path answered with `index.html`. Enter rebuilds;
Ctrl-C stops both servers.
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
from typing import Any

from fcbuild_cli import pack
from fcbuild_cli.cloud import UsageError

REGION = "cn-hangzhou"
BUCKET_SRC, BUCKET_SITE = "src", "site"


def state_dir(root: str) -> str:
    """Per project, outside it (a build must find no repository above its workspace) and reachable by
    build users: under the system's temporary folder."""
    digest = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"fcbuild-dev-{digest}")


def run(root: str, port: int, out: Any, *, once: bool = False) -> int:
    from localoss import Account, LocalOss
    from localoss.website import Website

    if not os.path.isdir(root):
        raise UsageError(f"{root}: not a folder")
    state = state_dir(root)
    os.makedirs(state, exist_ok=True)
    os.chmod(state, 0o755)
    account = Account("STS.dev-key-id", os.urandom(12).hex(), os.urandom(12).hex())
    framework = pack.framework_of(root)
    spa = bool(framework and framework.spa)
    website = Website(BUCKET_SITE, "", error_document="index.html" if spa else "", error_status=200 if spa else 0)
    try:
        oss = LocalOss(
            os.path.join(state, "oss"), buckets=[BUCKET_SRC, BUCKET_SITE], accounts=[account], region=REGION,
            port=port, website=website,
        )  # fmt: skip
    except OSError as exc:
        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror} (pass --port)") from None
    with oss:
        runtime, runtime_port, log_path = _start_runtime(state, oss.endpoint, account)
        try:
            url = f"http://127.0.0.1:{oss.server.server_address[1]}/"
            while True:
                code = _build(root, oss.endpoint, account, runtime_port, out)
                if code == 0:
                    print(url, flush=True)
                    out.say(
                        f"serving at {url}{' (a single-page app: missing paths get index.html)' if spa else ''}", "ok"
                    )
                else:
                    out.say(f"the runtime's log: {log_path}", "dim")
                if once:
                    return code
                out.say("Enter rebuilds, Ctrl-C stops", "dim")
                if not sys.stdin.readline():
                    while True:  # stdin closed: keep serving until interrupted
                        time.sleep(3600)
        except KeyboardInterrupt:
            out.say("stopping", "dim")
            return 0
        finally:
            runtime.terminate()
            try:
                runtime.wait(timeout=30)
            except subprocess.TimeoutExpired:
                runtime.kill()


def _start_runtime(state: str, endpoint: str, account: Any) -> tuple[subprocess.Popen, int, str]:
    import fc_runtime

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "FCBUILD_", "FC_"))}
    here = os.path.dirname(os.path.abspath(fc_runtime.__file__))
    env.update(
        {
            "FC_REGION": REGION,
            "FC_FUNCTION_NAME": "fcbuild-dev",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": account.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": account.access_key_secret,
            "ALIBABA_CLOUD_SECURITY_TOKEN": account.security_token,
            "FCBUILD_OSS_ENDPOINT": endpoint,
            "FCBUILD_WORKSPACE_ROOT": os.path.join(state, "workspace"),
            "PYTHONPATH": os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p),
        }
    )  # fmt: skip
    log_path = os.path.join(state, "runtime.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fc_runtime", "0", "--host", "127.0.0.1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if "listening on" in line:
                    return proc, int(line.rsplit(":", 1)[1].split()[0]), log_path
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise UsageError(f"the fcbuild runtime did not start; its log is {log_path}")


def _build(root: str, endpoint: str, account: Any, runtime_port: int, out: Any) -> int:
    import oss2

    files = pack.project_files(root, pack.output_folder(root))
    data = pack.pack(root, files)
    key = f"dev/fcbuild-src-{pack.digest(data)[:32]}.tar.gz"
    auth = oss2.StsAuth(account.access_key_id, account.access_key_secret, account.security_token, auth_version="v4")
    oss2.Bucket(auth, endpoint, BUCKET_SRC, region=REGION).put_object(key, data)
    out.say(f"packed {len(files)} files; building...")
    event = {"source": f"oss://{BUCKET_SRC}/{key}", "target": f"oss://{BUCKET_SITE}/"}
    headers = {
        "Content-Type": "application/octet-stream",
        "x-fc-request-id": f"dev-{int(time.time() * 1000)}",
        "x-fc-function-name": "fcbuild-dev",
        "x-fc-region": REGION,
        "x-fc-function-timeout": "3600",
    }
    conn = http.client.HTTPConnection("127.0.0.1", runtime_port, timeout=3600)
    started = time.monotonic()
    conn.request("POST", "/invoke", body=json.dumps(event).encode(), headers=headers)
    response = conn.getresponse()
    result = json.loads(response.read() or b"{}")
    conn.close()
    if result.get("errorType"):
        message = str(result.get("errorMessage", ""))
        out.say(f"failed: {result['errorType']}: {message}", "bad")
        return 1
    files_doc = result.get("files") or {}
    out.say(
        f"built in {time.monotonic() - started:.1f}s: {files_doc.get('uploaded', 0)} files uploaded, "
        f"{files_doc.get('skipped', 0)} unchanged (cache {(result.get('cache') or {}).get('hit', '?')})",
        "ok",
    )
    return 0
