"""The frozen dist/bootstrap (named by FC_RUNTIME_BIN): fully static, and alive in an empty root.

Run by `make test-binary` (and so by `make test`) after build.sh; needs root for unshare/chroot.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

BIN = os.path.abspath(os.environ["FC_RUNTIME_BIN"])


def test_no_interpreter_and_no_shared_libraries():
    program_headers = subprocess.run(["readelf", "-lW", BIN], capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in program_headers and "program interpreter" not in program_headers
    dynamic = subprocess.run(["readelf", "-dW", BIN], capture_output=True, text=True, check=True).stdout
    assert "(NEEDED)" not in dynamic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str, body: bytes = b"", rid: str = "r") -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers={"x-fc-request-id": rid, "Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


@pytest.fixture
def empty_root(tmp_path):
    """A folder holding only the binary, tmp/ (1777) and proc/, entered with a clean environment."""
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    os.chmod(root / "tmp", 0o1777)
    (root / "proc").mkdir()
    shutil.copy2(BIN, root / "bootstrap")
    return root


def _start(root, port: int, log_path) -> subprocess.Popen:
    argv = ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={root}/proc"]
    argv += [
        "env",
        "-i",
        "PATH=/",
        "FCBUILD_WORKSPACE_ROOT=/ws",
        shutil.which("chroot"),
        str(root),
        "/bootstrap",
        str(port),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"bootstrap did not start in the empty root:\n{log_path.read_text()}")


def _bootstrap_pid(unshare_pid: int) -> int:
    """unshare forks the namespace's PID 1 (env -> chroot -> /bootstrap, one exec chain)."""
    with open(f"/proc/{unshare_pid}/task/{unshare_pid}/children") as f:
        return int(f.read().split()[0])


@pytest.mark.parametrize("attempt", range(5))
def test_lifecycle_in_an_empty_root(empty_root, tmp_path, attempt):
    """Steps: start in the empty root; /initialize; a bad /invoke; /pre-stop, then SIGTERM twice while it
    exits; exit 0; tmp/ left empty.

    Five times: without the bundled libgcc_s, exit aborted in about one run in three (a daemon thread's
    pthread_exit at interpreter exit needs it, and the empty root has none)."""
    port = _free_port()
    proc = _start(empty_root, port, tmp_path / "log1")
    status, headers, body = _request(port, "POST", "/initialize", rid="init")
    assert (status, headers["x-fc-status"], body["initialized"]) == (200, "200", True)
    status, headers, body = _request(port, "POST", "/invoke", b'{"source": 1}', rid="bad")
    assert (status, headers["x-fc-status"], body["errorType"]) == (404, "404", "InvalidRequest")
    status, _, _ = _request(port, "GET", "/pre-stop", rid="stop")
    assert status == 200
    for _ in range(2):  # FC may signal the process after PreStop, while it exits
        time.sleep(0.01 * attempt)
        try:
            os.kill(_bootstrap_pid(proc.pid), signal.SIGTERM)
        except (OSError, IndexError, ValueError):
            break  # already gone
    code = proc.wait(timeout=30)
    log = (tmp_path / "log1").read_text()
    assert code == 0, log
    assert os.listdir(empty_root / "tmp") == []
    assert (empty_root / "ws").is_dir()
    assert "FC Invoke End RequestId: bad" in log and "FC PreStop End RequestId: stop" in log


def test_sigterm_reaches_the_server_through_both_bootloaders(empty_root, tmp_path):
    """Steps: start in the empty root; /initialize; SIGTERM to the namespace's PID 1 (staticx's stub);
    the Python server stops cleanly, exit 0, and both bootloaders' temp folders are gone."""
    port = _free_port()
    proc = _start(empty_root, port, tmp_path / "log2")
    assert _request(port, "POST", "/initialize")[0] == 200
    assert os.listdir(empty_root / "tmp")  # the bootloaders' unpacked files, while running
    os.kill(_bootstrap_pid(proc.pid), signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "fcbuild exited cleanly" in (tmp_path / "log2").read_text()
    assert os.listdir(empty_root / "tmp") == []
