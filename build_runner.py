"""Running install and build: each command in a process group of its own, as the build slot's
user, under a deadline, with its output streamed to the log (with the request id), kept whole in
a redacted file, and its tail kept for the error message. When a step ends, however it ends,
every process it started is killed and its output pipe is closed."""

from __future__ import annotations

import collections
import errno
import os
import re
import resource
import selectors
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import sandbox
from context import redact
from errors import BuildFailed, BuildTimeout, DiskFull, NotAvailable

TAIL_LINES = 30
KILL_GRACE_S = 3.0
DRAIN_AFTER_END_S = 0.5  # output still buffered in the pipe when the step's processes are gone
DISK_FULL_BYTES = 1 << 20
DISK_FULL_TEXT = ("ENOSPC", "No space left on device")
# Lines that name a failure's cause, as npm, pnpm, yarn, tsc, webpack, Vite and Node print them.
CAUSE_RE = re.compile(
    r"npm ERR!|npm error (?!\s*$)|ERR_PNPM_\w+|\berror TS\d+|\bERROR in\b|\[vite\]|\[vite:|FetchError|"
    r"Cannot find module|\b(?:Type|Reference|Syntax|Range)?Error:|\berror\b.*:|YN\d{4}:.*(?:error|Error)|"
    r"\[ERROR\]|^\s*(?:ERROR|FATAL)\b|\bFATAL\b|YAMLException"  # Docusaurus and esbuild, Hexo, js-yaml
)
# Lines that only look like causes: warnings (webpack's cache `<w>` lines, `WARN`), and success lines.
WARNING_RE = re.compile(r"^\s*<w>|^\s*\[?warn(?:ing)?\b|\bWARN\b|\[success\]|^\s*(?:npm )?warn\b", re.IGNORECASE)
CAUSE_LINES = 3
# Terminal colour and cursor codes: stripped from every line before it is logged, saved or quoted.
ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
# A failed network fetch: from the registry (a mirror helps) or from elsewhere (a tool's own download).
NETWORK_RE = re.compile(r"getaddrinfo|ETIMEDOUT|ECONNRESET|ECONNREFUSED|EAI_AGAIN|socket hang up")
REGISTRY_FETCH_RE = re.compile(
    r"npm (?:ERR!|error) (?:code |network)|ERR_PNPM_(?:META_FETCH_FAIL|FETCH_\w+)|YN0001|"
    r"request to https?://[^/\s]*(?:registry|npmmirror|npmjs)[^\s]*|registry\.|/-/[^\s]*\.tgz"
)
REGISTRY_HINT = (
    "a registry fetch failed: give the function internet access, or name a mirror in build.registry "
    "(or the function's FCBUILD_NPM_REGISTRY)"
)
DOWNLOAD_HINT = (
    "a download the npm registry cannot serve failed (fonts, Cypress, sharp's libvips, a GitHub release): give the "
    "function internet access, or set that tool's own mirror or skip variable in build.env (CYPRESS_INSTALL_BINARY=0, "
    "SHARP_DIST_BASE_URL or npm_config_sharp_libvips_binary_host, PUPPETEER_SKIP_DOWNLOAD=1, ...), or make the build "
    "work offline"
)


# Failures with a known remedy: (a text in the output, what to do).
HINTS = (
    (
        "ERR_OSSL_EVP_UNSUPPORTED",
        "webpack 4 (vue-cli 4, create-react-app 4) hashes with MD4, which Node 17 and later refuse: set "
        "build.env NODE_OPTIONS=--openssl-legacy-provider, or build with an older build.node_version such as 16",
    ),
    (
        "ERR_PNPM_IGNORED_BUILDS",
        "pnpm 10 and later run no dependency's build script unless the project allows it: list the packages in "
        "package.json pnpm.onlyBuiltDependencies, or pin the pnpm that wrote the lockfile in packageManager",
    ),
    (
        "allowScripts",
        "npm 11 runs a dependency's install scripts only when package.json's allowScripts lists it",
    ),
)


def failure_hint(lines: list[str]) -> str:
    """What to do about the first known failure in the output, or ""."""
    text = "\n".join(lines)
    hint = next((hint for needle, hint in HINTS if needle in text), "")
    if hint or not NETWORK_RE.search(text):
        return hint
    failed = [line for line in lines if NETWORK_RE.search(line)]
    return REGISTRY_HINT if any(REGISTRY_FETCH_RE.search(line) for line in failed) else DOWNLOAD_HINT


def first_cause(lines: list[str]) -> str:
    """The first lines of the output that name the failure's cause, or "": an error line first, a
    warning that looks like one only when there is none."""
    for skip_warnings in (True, False):
        for i, line in enumerate(lines):
            if CAUSE_RE.search(line) and not (skip_warnings and WARNING_RE.search(line)):
                return "\n".join(lines[i : i + CAUSE_LINES]).strip()
    return ""


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text) if "\x1b" in text else text


class BuildLog:
    """The build's output: streamed to the log with the request id, written (redacted) to a file
    that is saved next to the deploy, and its tail kept for the error message. A failed write
    (a full disk) is counted, never raised: the output keeps being drained."""

    def __init__(self, path: str, secrets: Callable[[], tuple[str, ...]], log: Any, max_bytes: int = 0) -> None:
        self.path = path
        self.secrets = secrets
        self.log = log
        self.max_bytes = max_bytes  # FCBUILD_LOG_MAX_MB: what the file (and the runtime's log) takes; 0: no cap
        self.written = 0
        self.over_lines = 0  # past the cap: counted, not kept (but for the tail)
        self.over_bytes = 0
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        # The current step's last lines, shortened, for the cause finder: a bounded few MB whatever is printed.
        self.step_lines: collections.deque[str] = collections.deque(maxlen=20_000)
        self.lost_lines = 0
        self._lock = threading.Lock()
        self._kept = b""  # the file's bytes when it was closed
        try:  # read back through the same descriptor, never by name again: the name could be swapped
            self._file: Any = open(path, "w+", encoding="utf-8", opener=_new_file)  # noqa: SIM115 (the build's life)
        except OSError as exc:
            self._file = None
            self.log.warning("build log file not written (%s); its tail is kept in memory", exc)

    def line(self, step: str, text: str) -> None:
        text = redact(strip_ansi(text.rstrip("\r\n")), self.secrets())[:2000]
        entry = f"[{step}] {text}\n"
        with self._lock:
            self.tail.append(text)
            self.step_lines.append(text[:500])
            if self.max_bytes and self.written + len(entry) > self.max_bytes:
                self.over_lines += 1
                self.over_bytes += len(entry)
                first_over = self.over_lines == 1
            else:
                first_over = False
                self.written += len(entry)
                if self._file is not None and not self._file.closed:
                    try:
                        self._file.write(entry)
                    except OSError:
                        self.lost_lines += 1
                else:
                    self.lost_lines += 1
        if self.over_lines == 0:
            self.log.info("[%s] %s", step, text)
        elif first_over:
            self.log.warning(
                "the build's output passed FCBUILD_LOG_MAX_MB (%d MB): further lines are counted, not logged or "
                "saved, but for the last %d",
                self.max_bytes // (1024 * 1024),
                TAIL_LINES,
            )

    def tail_text(self) -> str:
        with self._lock:
            return "\n".join(self.tail)

    def failure_text(self) -> str:
        """For an error message: the cause first (the first error lines of the step's output, which
        a long stack trace after it would push out of the tail), what to do about a known failure,
        then the last lines."""
        with self._lock:
            lines = list(self.step_lines)
            cause = first_cause(lines)
            tail = "\n".join(self.tail)
        hint = failure_hint(lines)
        text = f"Cause:\n{cause}\n" if cause and cause not in tail.splitlines()[0:1] else ""
        if hint:
            text += f"Hint: {hint}\n"
        return f"{text}Last lines:\n{tail}"

    def start_step(self) -> None:
        with self._lock:
            self.step_lines.clear()

    def close(self) -> None:
        with self._lock:
            self._read_and_close()

    def _read_and_close(self) -> bytes:
        data = self._kept = self._read()
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except OSError:
                self.lost_lines += 1
        return data

    def _read(self) -> bytes:
        """The file as written so far (whole lines: they are written whole under the lock), read from
        its descriptor."""
        if self._file is None or self._file.closed:
            return self._kept
        try:
            self._file.flush()
        except OSError:
            pass
        chunks, offset = [], 0
        fd = self._file.fileno()
        try:
            while chunk := os.pread(fd, 1 << 20, offset):
                chunks.append(chunk)
                offset += len(chunk)
        except OSError:
            pass
        return b"".join(chunks)

    def snapshot(self) -> tuple[int, bytes]:
        """(bytes kept so far, the file as it is now), while the build still writes to it."""
        with self._lock:
            return self.written, self._read()

    def contents(self) -> bytes:
        """What to save: the file, plus the tail from memory when lines were lost."""
        with self._lock:
            data = self._read_and_close()
        if self.over_lines:
            note = (
                f"[fcbuild] {self.over_lines} more line(s) ({self.over_bytes} bytes) passed FCBUILD_LOG_MAX_MB "
                f"({self.max_bytes // (1024 * 1024)} MB) and were not kept; the last lines were:\n"
            )
            data += (note + self.tail_text() + "\n").encode()
        elif self.lost_lines:
            note = f"[fcbuild] {self.lost_lines} line(s) could not be written to disk; the last lines were:\n"
            data += (note + self.tail_text() + "\n").encode()
        return data


def _new_file(path: str, flags: int) -> int:
    """open()'s opener for the build log: a new file, private to the runtime, never through a link."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


class Containment:
    """What ends a step's processes: by the slot's uid when builds are isolated, else among the
    runtime's descendants outside other builds' process groups. `children` is the runtime's
    registry of running process groups (it terminates them at stop)."""

    def __init__(self, children: Any) -> None:
        self.children = children
        self.spawn_lock = threading.Lock()  # a reaper never collects a child Popen is about to wait for

    def spawn(self, argv: tuple[str, ...], **kwargs: Any) -> subprocess.Popen:
        with self.spawn_lock:
            proc = subprocess.Popen(argv, **kwargs)
            self.children.add(proc.pid)
        return proc

    def end(self, slot: sandbox.Slot, own_pgid: int | None = None) -> int:
        """Kill everything the slot's build left running; collect orphans. Returns how many were left."""
        if slot.isolated:
            assert slot.uid is not None and slot.gid is not None
            left = sandbox.end_uid(slot.uid, slot.gid)
        else:
            protected = set(self.children.snapshot()) - {own_pgid}
            left = sandbox.end_descendants(protected)
        with self.spawn_lock:
            sandbox.reap_orphans(self.children.snapshot())
        return left


class Runner:
    """Runs one command at a time in its own process group as the slot's user, with the deadline."""

    def __init__(
        self,
        cwd: str,
        env: dict[str, str],
        deadline: float,
        containment: Containment,
        slot: sandbox.Slot,
        out: BuildLog,
        log: Any,
        *,
        max_procs: int = 0,
        max_open_files: int = 0,
    ) -> None:
        self.cwd, self.env, self.deadline, self.out, self.log = cwd, env, deadline, out, log
        self.containment, self.slot = containment, slot
        self.max_procs, self.max_open_files = max_procs, max_open_files
        self.isolation_seconds = 0.0  # spent ending what the steps left running

    def __call__(self, step: str, argv: tuple[str, ...], *, cwd: str | None = None) -> None:
        self.out.start_step()
        self.out.line(step, f"$ {shlex.join(argv)}")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise BuildTimeout(f"no time left for {step} before the function's deadline")
        identity: dict[str, Any] = {}
        if self.slot.isolated:
            identity = {"user": self.slot.uid, "group": self.slot.gid, "extra_groups": []}
        where = cwd or self.cwd
        # What a shell started in that folder would say: a command given as an argv list has no
        # shell to set PWD (yarn berry's script shell reads it); INIT_CWD as npm sets it for scripts.
        env = {**self.env, "PWD": where, "INIT_CWD": self.env.get("INIT_CWD", where)}
        try:
            proc = self.containment.spawn(
                argv,
                cwd=where,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: npm spawns node, node spawns more
                umask=0o022,
                preexec_fn=_limiter(self._limits()),
                **identity,
            )
        except FileNotFoundError:
            raise NotAvailable(f"{step}: {argv[0]!r} not found (PATH={self.env.get('PATH')})") from None
        ended = threading.Event()
        reader = threading.Thread(target=self._pump, args=(proc, step, ended), name=f"{step}-output", daemon=True)
        reader.start()
        timed_out = False
        try:
            try:
                code = proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                self.log.warning("%s: deadline reached; terminating process group %d", step, proc.pid)
                _terminate_group(proc)
                timed_out = True
                code = proc.returncode
        finally:
            _signal_group(proc.pid, signal.SIGKILL)
            ending = time.monotonic()
            left = self.containment.end(self.slot, proc.pid)  # no process outlives its step
            self.isolation_seconds += time.monotonic() - ending
            self.containment.children.discard(proc.pid)
            ended.set()
            reader.join()
        if left:
            self.out.line(step, f"[fcbuild] killed {left} process(es) the step left running")
        if timed_out:
            raise BuildTimeout(
                f"{step} `{shlex.join(argv)}` passed its deadline ({remaining:.0f}s left when it started) and "
                f"its processes were killed. {self.out.failure_text()}"
            )
        if code != 0:
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
            if code < 0:  # not at its deadline (that is BuildTimeout, above)
                how += (
                    ", not at its deadline: by a stop of the runtime, by the kernel's out-of-memory killer (raise "
                    "the function's memory), or by another process of its user"
                )
            tail = self.out.tail_text()
            free = _free_bytes(self.cwd)
            if free is not None and (free < DISK_FULL_BYTES or any(t in tail for t in DISK_FULL_TEXT)):
                raise DiskFull(
                    f"{step} `{shlex.join(argv)}` {how} with the disk full ({free // 1024} KiB free under "
                    f"{self.cwd}): raise the function's disk size. Last lines:\n{tail}"
                )
            raise BuildFailed(f"{step} `{shlex.join(argv)}` {how}. {self.out.failure_text()}")

    def _limits(self) -> list[tuple[int, int]]:
        """The step's limits, inherited by all it starts: open files per process, and, when the
        build has a user of its own, processes and threads of that user (a fork loop stops there,
        and the instance keeps room for the runtime's own threads). Never above the runtime's own."""
        wanted = [(resource.RLIMIT_NOFILE, self.max_open_files)]
        if self.slot.isolated:
            wanted.append((resource.RLIMIT_NPROC, self.max_procs))
        limits = []
        for which, value in wanted:
            hard = resource.getrlimit(which)[1]
            if value:
                limits.append((which, value if hard == resource.RLIM_INFINITY else min(value, hard)))
        return limits

    def _pump(self, proc: subprocess.Popen, step: str, ended: threading.Event) -> None:
        """Forward the step's output line by line. Once the step has ended (and its processes are
        killed), drain what is buffered and close the pipe: a process that escaped and kept it
        open can neither delay the answer nor log under a finished request."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        pending = b""
        stop_at: float | None = None
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                if stop_at is None and ended.is_set():
                    stop_at = time.monotonic() + DRAIN_AFTER_END_S
                if stop_at is not None and time.monotonic() >= stop_at:
                    break
                if not sel.select(0.1):
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    break
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self.out.line(step, raw.decode("utf-8", "replace"))
                if len(pending) > 65536:  # a very long line without a newline
                    self.out.line(step, pending.decode("utf-8", "replace"))
                    pending = b""
        if pending:
            self.out.line(step, pending.decode("utf-8", "replace"))
        proc.stdout.close()


def _limiter(limits: list[tuple[int, int]]) -> Callable[[], None]:
    """Run in the step's first process after it has become the build's user, before it runs anything:
    lowering its own limits needs no privilege (setting another process's needs CAP_SYS_RESOURCE,
    which not every sandbox grants). Only C calls: it runs between fork and exec."""

    def limit() -> None:
        for which, value in limits:
            resource.setrlimit(which, (value, value))

    return limit


def _free_bytes(path: str) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


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
