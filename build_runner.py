"""Running install and build: each command in a process group of its own, under a deadline, with
its output streamed to the log (with the request id), kept whole in a redacted file, and its tail
kept for the error message."""

from __future__ import annotations

import collections
import os
import shlex
import signal
import subprocess
import threading
import time
from typing import Any

from context import redact
from errors import BuildFailed, BuildTimeout, NotAvailable

TAIL_LINES = 30
KILL_GRACE_S = 3.0


class BuildLog:
    """The build's output: streamed to the log with the request id, written (redacted) to a file
    that is saved next to the deploy, and its tail kept for the error message."""

    def __init__(self, path: str, secrets: tuple[str, ...], log: Any) -> None:
        self.path = path
        self.secrets = secrets
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (lives as long as the build)
        self._lock = threading.Lock()

    def line(self, step: str, text: str) -> None:
        text = redact(text.rstrip("\r\n"), self.secrets)[:2000]
        with self._lock:
            self.tail.append(text)
            if not self._file.closed:
                self._file.write(f"[{step}] {text}\n")
        self.log.info("[%s] %s", step, text)

    def tail_text(self) -> str:
        with self._lock:
            return "\n".join(self.tail)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


class Runner:
    """Runs one command at a time in its own process group, with the build's deadline."""

    def __init__(self, cwd: str, env: dict[str, str], deadline: float, children: Any, out: BuildLog, log: Any):
        self.cwd, self.env, self.deadline, self.children, self.out, self.log = cwd, env, deadline, children, out, log

    def __call__(self, step: str, argv: tuple[str, ...]) -> None:
        self.out.line(step, f"$ {shlex.join(argv)}")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise BuildTimeout(f"no time left for {step} before the function's deadline")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: npm spawns node, node spawns more
            )
        except FileNotFoundError:
            raise NotAvailable(f"{step}: {argv[0]!r} not found (PATH={self.env.get('PATH')})") from None
        self.children.add(proc.pid)
        reader = threading.Thread(target=self._pump, args=(proc, step), daemon=True)
        reader.start()
        try:
            try:
                code = proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                self.log.warning("%s: deadline reached; terminating process group %d", step, proc.pid)
                _terminate_group(proc)
                reader.join(5)
                raise BuildTimeout(
                    f"{step} `{shlex.join(argv)}` passed its deadline ({remaining:.0f}s left when it started) and "
                    f"its process group was killed. Last lines:\n{self.out.tail_text()}"
                ) from None
        finally:
            _signal_group(proc.pid, signal.SIGKILL)  # no orphan outlives its step (watchers, daemons)
            self.children.discard(proc.pid)
        reader.join(5)
        if code != 0:
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
            raise BuildFailed(f"{step} `{shlex.join(argv)}` {how}. Last lines:\n{self.out.tail_text()}")

    def _pump(self, proc: subprocess.Popen, step: str) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self.out.line(step, raw.decode("utf-8", "replace"))
        proc.stdout.close()


def _terminate_group(proc: subprocess.Popen) -> None:
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
