"""Start the real fcbuild process (source or frozen binary) and talk to it over HTTP.

`FC_RUNTIME_BIN` selects a frozen `bootstrap` instead of `python fc_runtime.py`.
"""

from __future__ import annotations

import atexit
import http.client
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FC_HEADERS = {
    "Content-Type": "application/octet-stream",
    "x-fc-function-name": "fcbuild-test",
    "x-fc-function-handler": "index.handler",
    "x-fc-function-memory": "1024",
    "x-fc-function-timeout": "300",
    "x-fc-region": "cn-hangzhou",
    "x-fc-account-id": "1234567890",
    "x-fc-qualifier": "LATEST",
    "x-fc-version-id": "1",
}


def npm_registry() -> str:
    """The registry npm uses on this machine."""
    done = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def registry_allowance() -> dict[str, str]:
    """The runtime's allowance for a test that names this machine's npm registry in build.registry:
    requester-chosen URLs reach public addresses only, and a registry reached through a proxy or a
    mirror may resolve to one that is not (here, a documentation range). Named explicitly."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    host = urlsplit(npm_registry()).hostname or ""
    found = {info[4][0] for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)}
    private = sorted(a for a in found if not ipaddress.ip_address(a).is_global)
    return {"FCBUILD_ALLOW_PRIVATE_NETS": ",".join(private)} if private else {}


def runtime_command() -> list[str]:
    binary = os.environ.get("FC_RUNTIME_BIN")
    if binary:
        return [os.path.abspath(binary)]
    return [sys.executable, os.path.join(ROOT, "fc_runtime.py")]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def function_error(resp: Response, error_type: str) -> dict[str, Any]:
    """Assert FC's function-error answer (404, x-fc-status 404, errorType, errorMessage, requestId); return the body."""
    assert resp.status == 404, resp.body
    assert resp.headers["x-fc-status"] == "404"
    body = resp.json()
    assert body["errorType"] == error_type, body
    assert body["errorMessage"] and body["requestId"], body
    return body


@dataclass
class RuntimeProcess:
    proc: subprocess.Popen
    port: int
    log_path: str
    workspace_root: str = ""
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        request_id: str | None = None,
        timeout: float = 120,
        fresh: bool = False,
    ) -> Response:
        """One request on the kept-alive connection, or on a private one with `fresh` (for concurrent callers)."""
        all_headers = dict(FC_HEADERS)
        all_headers["x-fc-request-id"] = request_id or f"req-{time.monotonic_ns()}"
        all_headers.update(headers or {})
        if fresh:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        else:
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            conn = self._conn
            conn.timeout = timeout
        conn.request(method, path, body=body, headers=all_headers)
        resp = conn.getresponse()
        data = resp.read()
        if fresh or resp.will_close:
            conn.close()
            if not fresh:
                self._conn = None
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def invoke(self, event: Any, **kw: Any) -> Response:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        return self.request("POST", "/invoke", body, **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


# The folders made here for runtimes (working folders, workspace roots, shared folders) are removed
# when this process exits: a test run would otherwise leave gigabytes of caches and node_modules
# behind in /tmp, and a fuller /tmp makes this machine's disk slower for the next measurement.
_MADE: list[str] = []
atexit.register(lambda: [subprocess.run(["rm", "-rf", "--", path], check=False) for path in _MADE])  # any depth


# Build uids per runtime: the first free block after this test process's own start (by its pid), so
# two test processes on one machine (a test run beside a benchmark) and two runtimes alive in one
# test each take users of their own. Free means no runtime holds the block's abstract socket names
# (sandbox.claim_uids), which an explicit FCBUILD_BUILD_UIDS that another runtime holds is refused on.
_UID_BLOCKS = itertools.count(8 * (os.getpid() % 50))


def _free_uid_block(size: int) -> int:
    for _ in range(400):
        first = 21000 + 8 * (next(_UID_BLOCKS) % 400)
        names = []
        try:
            for uid in range(first, first + size):
                name = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                names.append(name)
                name.bind(f"\0fcbuild-build-uid-{uid}")
            return first
        except OSError:
            continue
        finally:
            for name in names:
                name.close()
    raise RuntimeError("no free block of build uids: too many runtimes alive")


def shared_dir(prefix: str = "fcbuild-shared-") -> str:
    """A folder the build users may write to (sticky, like /tmp): where a test's build leaves
    evidence for the test to read."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o1777)
    _MADE.append(path)
    return path


def workspace_root_for(workdir: str) -> str:
    """A workspace root the build users can reach (pytest's own folders are closed to others), the
    same for the same workdir (a runtime restarted on it finds its caches)."""
    import hashlib

    name = "fcbuild-ws-" + hashlib.sha256(os.path.abspath(workdir).encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), name)


def start_runtime(
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    *,
    workdir: str | None = None,
    ready_timeout: float = 30,
    user: int | None = None,
    command: list[str] | None = None,
) -> RuntimeProcess:
    """Start fcbuild on port 0 and wait until it has logged the port it bound (no fixed sleep)."""
    if workdir is None:
        workdir = tempfile.mkdtemp(prefix="fcbuild-test-")
        _MADE.append(workdir)
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, "runtime.log")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "FC_", "FCBUILD_"))}
    if "FCBUILD_WORKSPACE_ROOT" not in (env or {}):
        full_env["FCBUILD_WORKSPACE_ROOT"] = workspace_root_for(workdir)
        _MADE.append(full_env["FCBUILD_WORKSPACE_ROOT"])
    if "TMPDIR" not in (env or {}):
        # The frozen binary's two bootloaders unpack ~40 MB into TMPDIR at each start and leave it
        # behind when the process is killed: a TMPDIR of its own, removed with the folders above.
        full_env["TMPDIR"] = shared_dir("fcbuild-tmp-")
    if "FCBUILD_BUILD_UIDS" not in full_env:  # runtimes on one machine stand for separate instances
        slots = int(full_env.get("FCBUILD_MAX_BUILDS", "1"))
        first = _free_uid_block(max(slots, 8))
        full_env["FCBUILD_BUILD_UIDS"] = f"{first}-{first + max(slots, 8) - 1}"
    full_env.update(env or {})
    identity = {}
    if user is not None:  # as another user: it needs to pass through its working folder
        os.chmod(workdir, 0o755)
        identity = {"user": user, "group": user, "extra_groups": []}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            (command or runtime_command()) + (args if args is not None else ["0", "--host", "127.0.0.1"]),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=workdir,
            start_new_session=True,
            **identity,
        )
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            match = re.search(r"listening on [\d.]+:(\d+)", f.read())
        if match:
            return RuntimeProcess(proc, int(match.group(1)), log_path, full_env["FCBUILD_WORKSPACE_ROOT"])
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.kill()
    with open(log_path, encoding="utf-8", errors="replace") as f:
        raise RuntimeError(f"fcbuild did not start (exit {proc.poll()}):\n{f.read()}")
