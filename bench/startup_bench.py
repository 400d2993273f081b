"""Exec to the first answered request, median of several starts (taken in turns), side by side in one run:

    python bench/startup_bench.py [--starts 10]

- `python fc_runtime.py` and `python bench/floor_server.py` (a stdlib-only server) from source;
- `dist/bootstrap` (make bootstrap) and the same floor server frozen the same way (PyInstaller
  onefile with its archives stored, not deflated, + staticx --no-compress, built here into build/floor/
  with the build venv, again whenever build.sh or this file is newer);
- dist/bootstrap's first and second POST /invoke after /initialize: what a cold instance's first
  build waits for (the build pipeline's import) that a warm instance's does not.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_VENV = os.path.join(ROOT, os.environ.get("BUILD_VENV", ".venv-build"))
FLOOR_BIN = os.path.join(ROOT, "build", "floor", "floor")
# build.sh freezes with this: the onefile archive and the modules in it stored, not deflated
STORED = {"PYINSTALLER_ZLIB_COMPRESSION_LEVEL": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_env() -> dict[str, str]:
    """The environment a start is measured in: none of FC's or fcbuild's settings, a fresh workspace root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FC_", "FCBUILD_", "ALIBABA_CLOUD_"))}
    env["FCBUILD_WORKSPACE_ROOT"] = tempfile.mkdtemp(prefix="fcbuild-bench-")
    atexit.register(shutil.rmtree, env["FCBUILD_WORKSPACE_ROOT"], ignore_errors=True)
    return env


def start_to_first_answer(
    argv: list[str], runs: int, method: str = "GET", path: str = "/health", then: Callable[[int], Any] | None = None
) -> list[tuple]:
    """(exec -> port accepts a connection, exec -> first answer to `method path`) for each start, and
    with `then`, what then(port) returns, asked while the process still runs."""
    times = []
    for _ in range(runs):
        port, env = free_port(), start_env()
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv + [str(port), "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        try:
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.connect()
                    opened = time.perf_counter() - started
                    conn.request(method, path, body=b"" if method == "POST" else None)
                    conn.getresponse().read()
                    conn.close()
                    break
                except OSError:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{argv} exited with {proc.returncode}") from None
                    time.sleep(0.001)
            times.append((opened, time.perf_counter() - started) + ((then(port),) if then else ()))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"  {argv[0]} (pid {proc.pid}) did not exit within 10 s of SIGTERM", file=sys.stderr)
                proc.kill()
                raise
    return times


def interleaved(argvs: list[list[str]], runs: int, method: str = "GET", path: str = "/health") -> list[list[tuple]]:
    """start_to_first_answer for each argv in turn, one start each per round: a slow spell of this
    shared machine falls on all of them alike."""
    results: list[list[tuple]] = [[] for _ in argvs]
    for _ in range(runs):
        for i, argv in enumerate(argvs):
            results[i] += start_to_first_answer(argv, 1, method, path)
    return results


def invoke_twice(port: int) -> tuple[float, float]:
    """The answer times of an instance's first and second POST /invoke. The request is rejected (no
    source) once the build pipeline is loaded: the first call waits for its import (a cold instance),
    the second does not (a warm one)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    pair = []
    for _ in range(2):
        started = time.perf_counter()
        conn.request("POST", "/invoke", body=b"{}")
        answer = conn.getresponse()
        body = answer.read()
        pair.append(time.perf_counter() - started)
        if b"InvalidRequest" not in body:
            raise RuntimeError(f"unexpected answer to an empty build request: {answer.status} {body[:200]!r}")
    conn.close()
    return pair[0], pair[1]


def ms(values) -> str:  # type: ignore[no-untyped-def]
    return f"{statistics.median(values) * 1000:5.0f} ms"


def build_floor() -> None:
    route = [os.path.join(ROOT, "build.sh"), os.path.abspath(__file__)]
    if os.path.exists(FLOOR_BIN) and os.path.getmtime(FLOOR_BIN) > max(map(os.path.getmtime, route)):
        return
    work = os.path.join(ROOT, "build", "floor")
    shutil.rmtree(work, ignore_errors=True)  # PyInstaller would reuse its cached archives, whatever the route
    tool = os.path.join(BUILD_VENV, "bin")
    if not os.path.exists(os.path.join(tool, "staticx")):
        sys.exit("no build venv: run make bootstrap first")
    subprocess.run(
        [os.path.join(tool, "pyinstaller"), "--onefile", "--noconfirm", "--log-level", "WARN", "--strip",
         "--name", "floor-onefile", "--distpath", work, "--workpath", os.path.join(work, "w"), "--specpath", work,
         os.path.join(ROOT, "bench", "floor_server.py")],
        check=True,
        env={**os.environ, **STORED},
    )  # fmt: skip
    env = dict(os.environ, PATH=f"{tool}:{os.environ['PATH']}")
    subprocess.run(
        [os.path.join(tool, "staticx"), "--no-compress", os.path.join(work, "floor-onefile"), FLOOR_BIN],
        check=True,
        env=env,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=10)
    args = parser.parse_args()
    bootstrap = os.path.join(ROOT, "dist", "bootstrap")
    if not os.path.exists(bootstrap):
        sys.exit("no dist/bootstrap: run make bootstrap first")
    build_floor()
    targets = [
        ("python fc_runtime.py", [sys.executable, os.path.join(ROOT, "fc_runtime.py")]),
        ("python bench/floor_server.py", [sys.executable, os.path.join(ROOT, "bench", "floor_server.py")]),
        ("dist/bootstrap", [bootstrap]),
        ("frozen floor_server (same route)", [FLOOR_BIN]),
    ]
    print(f"exec to the first answered request, median of {args.starts} starts:")
    answers = {}
    for (name, _), times in zip(targets, interleaved([argv for _, argv in targets], args.starts), strict=True):
        answers[name] = statistics.median(t for _, t in times)
        print(f"  {name:34s} {ms([t for _, t in times])}")
    print(f"  dist/bootstrap / frozen floor: {answers['dist/bootstrap'] / answers[targets[3][0]]:.2f}x")
    times = start_to_first_answer([bootstrap], args.starts, "POST", "/initialize", then=invoke_twice)
    opened, initialized = [t[0] for t in times], [t[1] for t in times]
    print("dist/bootstrap, exec to FC's first lifecycle call (POST /initialize):")
    print(f"  port accepts a connection          {ms(opened)}")
    print(f"  /initialize answered               {ms(initialized)}")
    print(f"  answered after the port opened     {ms([t[1] - t[0] for t in times])}")
    print("dist/bootstrap, POST /invoke right after /initialize (a request rejected once the pipeline is loaded):")
    print(f"  first, on a cold instance          {ms([t[2][0] for t in times])}")
    print(f"  second, on the same warm instance  {ms([t[2][1] for t in times])}")
    for name, path in (("dist/bootstrap", bootstrap), ("frozen floor", FLOOR_BIN)):
        print(f"  size of {name}: {os.path.getsize(path) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
