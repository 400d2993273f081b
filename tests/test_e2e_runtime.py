"""The real fcbuild process over real HTTP: FC's lifecycle calls, errors, concurrency, stop.

Runs against `python fc_runtime.py`, or against the frozen binary named in FC_RUNTIME_BIN.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import signal
import time

import pytest

from tests.runtime_proc import function_error, start_runtime

SECRET = "hdr-SECRET-5f1e2d"
TOKEN = "hdr-TOKEN-99aa77"
ENV_SECRET = "env-SECRET-a1b2c3"
ENV_TOKEN = "env-TOKEN-d4e5f6"
CRED_HEADERS = {"x-fc-access-key-id": "STS.hdrid", "x-fc-access-key-secret": SECRET, "x-fc-security-token": TOKEN}
VALID = {"source": "oss://src-bucket/app.tar.gz", "target": {"bucket": "site-bucket", "prefix": "app/"}}


@pytest.fixture
def runtime():
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.envid",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ENV_SECRET,
        "ALIBABA_CLOUD_SECURITY_TOKEN": ENV_TOKEN,
        "FCBUILD_LOG_LEVEL": "DEBUG",
    }
    rt = start_runtime(env)
    yield rt
    rt.kill()


def test_initialize_is_idempotent(runtime):
    first = runtime.request("POST", "/initialize", request_id="init-1")
    assert (first.status, first.headers["x-fc-status"]) == (200, "200")
    assert first.json() == {"initialized": True, "already": False}
    second = runtime.request("POST", "/initialize", request_id="init-2")
    assert second.json() == {"initialized": True, "already": True}
    out = runtime.output()
    assert "FC Initialize Start RequestId: init-1" in out and "FC Initialize End RequestId: init-1" in out


def test_invoke_without_initialize_and_markers(runtime):
    resp = runtime.invoke({"source": 1}, request_id="inv-1", headers=CRED_HEADERS)
    body = function_error(resp, "InvalidRequest")
    assert body["requestId"] == "inv-1"
    assert "source" in body["errorMessage"]
    out = runtime.output()
    start = out.index("FC Invoke Start RequestId: inv-1")
    assert out.index("FC Invoke End RequestId: inv-1") > start


@pytest.mark.parametrize(
    "body,field",
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"", "empty"),
        (json.dumps({"source": "oss://src-bucket/a.tar.gz"}).encode(), "target: required"),
        (json.dumps({**VALID, "build": {"timeout_s": "soon"}}).encode(), "build.timeout_s"),
        (json.dumps({**VALID, "build": {"install": 5}}).encode(), "build.install"),
        (json.dumps({**VALID, "build": {"env": {"A": 1}}}).encode(), "build.env.A"),
        (json.dumps({**VALID, "surprise": True}).encode(), "'surprise': unknown field"),
        (json.dumps({**VALID, "source": {"bucket": "Bad_Bucket", "key": "a.zip"}}).encode(), "source.bucket"),
        (b"[" * 5000 + b"]" * 5000, "nested more than 32 levels"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nested more than 32 levels"),
        (b'{"source": ' + b"7" * 5000 + b"}", "a number of 5000 characters (the limit is 32)"),
        (b'{"source": NaN}', "NaN is not JSON"),
        (b'{"source": "\\ud800"}', "lone surrogate"),
        (
            json.dumps({**VALID, "target": {"bucket": "site", "prefix": "a\nb/"}}).encode(),
            "target.prefix: has a control",
        ),
        (
            json.dumps({**VALID, "target": {"bucket": "site", "prefix": "p" * 1100}}).encode(),
            "target.prefix: 1101 bytes",
        ),
        (
            json.dumps({**VALID, "target": {"bucket": "site", "prefix": "a/../b"}}).encode(),
            "target.prefix: must not have",
        ),
        (json.dumps({**VALID, "source": {"bucket": "src", "key": "/a.zip"}}).encode(), "source.key: must not start"),
        (
            json.dumps({**VALID, "deploy": {"cache_control": [{"pattern": "*", "value": "max-age=1 é"}]}}).encode(),
            "deploy.cache_control[0].value: must be visible ASCII",
        ),
        (json.dumps({**VALID, "build": {"command": ["npm", "run\u0000"]}}).encode(), "build.command[1]: has a NUL"),
        (json.dumps({**VALID, "build": {"env": {"A": "x\u0000y"}}}).encode(), "build.env.A: has a NUL"),
        (json.dumps({**VALID, "bad\nname": 1}).encode(), "a field name has a control character"),
        (json.dumps({**VALID, "build": {"node_version": "banana"}}).encode(), "build.node_version: 'banana' is not"),
        (json.dumps({**VALID, "build": {"node_version": ">="}}).encode(), "build.node_version: '>=' is not"),
        (json.dumps({**VALID, "build": {"node_version": "lts/argonaut"}}).encode(), "names no Node.js LTS line"),
        (json.dumps({**VALID, "build": {"node_version": "1" * 100_000}}).encode(), "build.node_version: at most 100"),
        (json.dumps({**VALID, "build": {"secrets": {"PIN": "1234"}}}).encode(), "build.secrets.PIN: a secret of 4"),
    ],
)
def test_invalid_requests(runtime, body, field):
    resp = runtime.invoke(body)
    assert field in function_error(resp, "InvalidRequest")["errorMessage"]


def test_oversized_body_is_refused_and_connection_survives(runtime):
    resp = runtime.invoke(b" " * (32 * 1024 * 1024 + 1))
    assert "limit" in function_error(resp, "InvalidRequest")["errorMessage"]
    assert runtime.request("GET", "/health").status == 200


def test_content_type_does_not_matter(runtime):
    for ctype in ("application/octet-stream", "application/json", "text/plain"):
        resp = runtime.invoke(b"[]", headers={"Content-Type": ctype})
        function_error(resp, "InvalidRequest")


def test_chunked_body(runtime):
    conn = http.client.HTTPConnection("127.0.0.1", runtime.port, timeout=30)
    conn.request("POST", "/invoke", body=iter([b'{"source":', b" 7}"]), headers={"x-fc-request-id": "chunk"})
    resp = conn.getresponse()
    assert resp.status == 404
    assert "source" in json.loads(resp.read())["errorMessage"]


def test_valid_request_is_never_a_fake_success(runtime):
    resp = runtime.invoke(VALID, headers=CRED_HEADERS)
    assert resp.status == 404 and resp.headers["x-fc-status"] == "404"
    assert resp.json()["errorType"] != "InvalidRequest"


def test_control_path_routing(runtime):
    resp = runtime.request("POST", "/", b"[]", headers={"x-fc-control-path": "/invoke"})
    function_error(resp, "InvalidRequest")
    resp = runtime.request("POST", "/", b"", headers={"x-fc-control-path": "/initialize"})
    assert resp.status == 200 and resp.json()["initialized"] is True


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/invoke", json.dumps(VALID).encode()),
        ("POST", "/initialize", b""),
        ("GET", "/pre-stop", None),
        ("GET", "/pre-freeze", None),
        ("GET", "/health", None),
        ("POST", "/", json.dumps(VALID).encode()),
    ],
)
def test_a_request_through_an_http_trigger_reaches_no_lifecycle_path(runtime, method, path, body):
    """FC marks a request that came through an HTTP trigger with x-fc-control-path /http-invoke: a
    stranger's. It is refused before its body is read: no build starts (a valid request with the
    function's credentials would have reached OSS), the runtime does not stop, and the connection
    stays usable."""
    resp = runtime.request(method, path, body, headers={**CRED_HEADERS, "x-fc-control-path": "/http-invoke"})
    assert resp.status == 403, resp.body
    assert "x-fc-status" not in resp.headers
    assert resp.json()["error"] == "Forbidden"
    assert "HTTP trigger" in resp.json()["message"]
    assert "FC Invoke Start" not in runtime.output()
    assert runtime.request("GET", "/health").json()["status"] == "ok"
    assert runtime.proc.poll() is None


def test_unknown_path_is_a_plain_404(runtime):
    resp = runtime.request("GET", "/nope")
    assert resp.status == 404
    assert "x-fc-status" not in resp.headers
    assert resp.json()["error"] == "NotFound"
    resp = runtime.request("GET", "/invoke")
    assert resp.status == 405 and resp.headers["allow"] == "POST"


def test_keep_alive_connection_is_reused(runtime):
    conn = http.client.HTTPConnection("127.0.0.1", runtime.port, timeout=30)
    for i in range(20):
        conn.request("POST", "/invoke", body=b"[]", headers={"x-fc-request-id": f"ka-{i}"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404 and not resp.will_close
    assert conn.sock is not None


def test_fifty_concurrent_clients(runtime):
    def one(i):
        conn = http.client.HTTPConnection("127.0.0.1", runtime.port, timeout=60)
        conn.request("POST", "/invoke", body=b"{", headers={"x-fc-request-id": f"burst-{i}"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        return resp.status, body["requestId"], body["errorType"]

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    assert results == [(404, f"burst-{i}", "InvalidRequest") for i in range(50)]
    out = runtime.output()
    assert all(f"FC Invoke End RequestId: burst-{i}" in out for i in range(50))


def test_pre_freeze(runtime):
    resp = runtime.request("GET", "/pre-freeze", request_id="frz")
    assert resp.status == 200 and resp.headers["x-fc-status"] == "200"
    assert "FC PreFreeze Start RequestId: frz" in runtime.output()


def test_pre_stop_stops_the_process_cleanly(runtime):
    resp = runtime.request("GET", "/pre-stop", request_id="stop-1")
    assert resp.status == 200 and resp.headers["x-fc-status"] == "200"
    assert runtime.proc.wait(timeout=10) == 0
    out = runtime.output()
    assert "FC PreStop Start RequestId: stop-1" in out and "FC PreStop End RequestId: stop-1" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_gives_prompt_clean_exit(runtime, sig):
    """Steps: one request on a kept-alive connection (so an idle connection is open),
    send the signal, expect exit 0 well under the 0.5 s serve_forever poll plus grace."""
    runtime.request("POST", "/initialize")
    started = time.monotonic()
    runtime.proc.send_signal(sig)
    assert runtime.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 3
    assert "exited cleanly" in runtime.output()


@pytest.mark.parametrize("attempt", range(5))
def test_pre_stop_then_sigterm_exits_cleanly(attempt):
    """FC calls PreStop and may then signal the process, more than once, at any moment of its exit."""
    rt = start_runtime()
    assert rt.request("POST", "/initialize").status == 200
    assert rt.request("GET", "/pre-stop").status == 200
    for _ in range(3):
        time.sleep(0.005 * attempt)
        if rt.proc.poll() is None:
            rt.proc.send_signal(signal.SIGTERM)
    assert rt.proc.wait(timeout=10) == 0, rt.output()
    assert "Traceback" not in rt.output() and "exited cleanly" in rt.output()


def _python_process(top: int) -> int:
    """The process that runs Python: `top` itself from source; the innermost child when frozen."""
    pid = top
    while True:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = f.read().split()
        except OSError:
            return pid
        if not children:
            return pid
        pid = int(children[0])


def test_sigterm_while_starting_up_is_honoured_once_the_server_exists():
    """SIGTERM as soon as Python has a handler for it (before the port is open): exit 0."""
    import subprocess

    from tests.runtime_proc import runtime_command

    proc = subprocess.Popen(runtime_command() + ["0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{_python_process(proc.pid)}/status") as f:
                caught = int(next(line for line in f if line.startswith("SigCgt:")).split()[1], 16)
        except (OSError, StopIteration):
            caught = 0
        if (
            caught & (1 << (signal.SIGTERM - 1))
            and _python_process(proc.pid) != proc.pid
            or (caught & (1 << (signal.SIGTERM - 1)) and not os.environ.get("FC_RUNTIME_BIN"))
        ):
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    assert b"Traceback" not in out


def test_sigterm_during_the_warm_up_import_is_not_lost():
    """Steps, 40 times: start, get the first answer, SIGTERM at once (while the pipeline import runs
    in the background, so the kernel may deliver the signal to that thread); each must exit 0 within 5 s.

    Without the wakeup fd the accept loop slept through such a signal in about 1 start in 30, so this
    catches a regression most of the time, not every time."""
    for _ in range(40):
        rt = start_runtime()
        assert rt.request("GET", "/health").status == 200
        rt.proc.send_signal(signal.SIGTERM)
        assert rt.proc.wait(timeout=5) == 0


def test_credentials_never_printed(runtime):
    runtime.request("POST", "/initialize", headers=CRED_HEADERS)
    for body in (b"{", json.dumps(VALID).encode(), json.dumps({**VALID, "build": {"env": 3}}).encode()):
        runtime.invoke(body, headers=CRED_HEADERS)
        runtime.invoke(body)  # credentials from the environment
    resp = runtime.invoke(VALID, headers=CRED_HEADERS)
    assert runtime.stop() == 0
    out = runtime.output()
    assert "FC Invoke End" in out
    for secret in (SECRET, TOKEN, ENV_SECRET, ENV_TOKEN):
        assert secret not in out
        assert secret not in resp.body.decode()


def test_port_from_environment():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rt = start_runtime({"FC_CUSTOM_LISTEN_PORT": str(port)}, args=["--host", "127.0.0.1"])
    try:
        assert rt.port == port
        assert rt.request("GET", "/health").json()["status"] == "ok"
    finally:
        assert rt.stop() == 0


def test_bad_command_line_exits_with_usage_error():
    import subprocess

    from tests.runtime_proc import runtime_command

    done = subprocess.run(runtime_command() + ["not-a-port"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "port" in done.stderr
    done = subprocess.run(runtime_command() + ["--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "fcbuild" in done.stdout


def test_a_region_header_that_names_another_host_is_refused_before_any_request(runtime):
    """With FCBUILD_OSS_ENDPOINT unset, the endpoint is built from x-fc-region: a value of
    `x@127.0.0.1:PORT/` would send signed requests with the STS token to that port. It is refused,
    and nothing connects there."""
    import socket

    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen()
    trap.settimeout(0.5)
    region = f"x@127.0.0.1:{trap.getsockname()[1]}/"
    resp = runtime.invoke(VALID, headers={**CRED_HEADERS, "x-fc-region": region})
    assert "not a region id" in function_error(resp, "InvalidRequest")["errorMessage"]
    with pytest.raises(TimeoutError):
        trap.accept()
    trap.close()
