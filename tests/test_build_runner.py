"""Error messages lead with the cause: the first error lines of a failed step's output; and a
finished step's output is read to its end."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import types

import pytest

from build_runner import DOWNLOAD_HINT, REGISTRY_HINT, BuildLog, Runner, failure_hint, first_cause


@pytest.mark.parametrize(
    "lines,cause",
    [
        (["> tsc -b", "src/main.ts(3,1): error TS2304: Cannot find name 'oops'.", "x"], "error TS2304"),
        (["npm error code ERESOLVE", "npm error ERESOLVE could not resolve"], "npm error code ERESOLVE"),
        ([" ERR_PNPM_IGNORED_BUILDS  Ignored build scripts: esbuild"], "ERR_PNPM_IGNORED_BUILDS"),
        (["ERROR in ./src/main.js 3:0", "Module not found"], "ERROR in ./src/main.js"),
        (['[vite]: Rollup failed to resolve import "x"'], "[vite]: Rollup failed"),
        (["FetchError: request to https://fonts.example/x failed"], "FetchError"),
        (["Error: Cannot find module 'left-pad'"], "Cannot find module"),
        (
            ["opensslErrorStack: [ 'error:03000086:digital envelope routines::initialization error' ],"],
            "error:03000086",
        ),
    ],
)
def test_the_cause_is_found_before_the_stack_trace(lines, cause):
    stack = [f"    at frame{i} (/x/node_modules/y.js:{i}:1)" for i in range(60)]
    found = first_cause(["building...", *lines, *stack])
    assert cause in found and "at frame10" not in found


@pytest.mark.parametrize(
    "lines,cause",
    [
        (["[INFO] Creating an optimized production build...", "[ERROR] Error: Unable to build website"], "[ERROR]"),
        (['\u2718 [ERROR] Could not resolve "./missing"', "    src/index.ts:1:7:"], "Could not resolve"),
        (["INFO  Start processing", "FATAL Something's wrong. Maybe you can find the solution here"], "FATAL"),
        (["ERROR Plugin load failed: hexo-renderer-x"], "ERROR Plugin load failed"),
        (["YAMLException: bad indentation of a mapping entry (3:5)"], "YAMLException"),
    ],
)
def test_the_causes_other_tools_print_are_found(lines, cause):
    assert cause in first_cause(["building...", *lines, "    at x (y.js:1:1)"])


def test_an_error_line_is_preferred_to_a_warning_that_looks_like_one():
    lines = [
        "<w> [webpack.cache.PackFileCacheStrategy] Caching failed for pack: Error: ENOENT: no such file",
        "npm warn deprecated inflight@1.0.6: This module is not supported",
        "[success] Generated static files",
        "src/App.vue(3,1): error TS2304: Cannot find name 'oops'.",
    ]
    assert first_cause(lines).startswith("src/App.vue(3,1): error TS2304")
    assert "Caching failed" in first_cause(lines[:1])  # a warning is still better than nothing


def test_the_network_hint_says_whether_a_mirror_can_help():
    registry = "npm error network request to https://registry.npmjs.org/vite failed, reason: getaddrinfo EAI_AGAIN"
    pnpm = " ERR_PNPM_META_FETCH_FAIL  GET https://registry.npmjs.org/vite: request failed, reason: ETIMEDOUT"
    assert failure_hint([registry]) == REGISTRY_HINT and failure_hint([pnpm]) == REGISTRY_HINT
    cypress = "The Cypress App could not be downloaded. URL: https://download.cypress.io/desktop.json getaddrinfo"
    sharp = "sharp: Installation error: connect ETIMEDOUT github.com:443"
    assert failure_hint([cypress]) == DOWNLOAD_HINT and "CYPRESS_INSTALL_BINARY=0" in DOWNLOAD_HINT
    assert failure_hint([sharp]) == DOWNLOAD_HINT


def test_colour_codes_never_reach_the_log_the_file_or_the_message(tmp_path):
    import logging

    path = tmp_path / "build.log"
    out = BuildLog(str(path), lambda: (), logging.getLogger("test"))
    out.line("build", "\x1b[31m\x1b[1merror\x1b[22m\x1b[39m TS2304: \x1b]8;;https://x\x07link\x1b]8;;\x07 oops\x1b[K")
    assert out.tail_text() == "error TS2304: link oops"
    assert "\x1b" not in out.failure_text()
    assert b"\x1b" not in out.contents() and b"error TS2304: link oops" in out.contents()


def test_the_log_is_read_back_from_what_was_opened_not_from_its_name(tmp_path):
    """Whoever could rename in the log's folder must not make the runtime publish another file:
    the live copy and the saved one come from the descriptor opened at the start."""
    import logging

    secret = tmp_path / "root-only"
    secret.write_text("NOT-THE-BUILD-LOG")
    path = tmp_path / "build.log"
    out = BuildLog(str(path), lambda: (), logging.getLogger("test"))
    out.line("build", "ünïcode line one")
    assert os.stat(path).st_mode & 0o777 == 0o600
    path.unlink()
    path.symlink_to(secret)
    out.line("build", "line two")
    written, live = out.snapshot()
    assert live == "[build] ünïcode line one\n[build] line two\n".encode() and written > 0
    saved = out.contents()
    assert saved == live and b"NOT-THE-BUILD-LOG" not in saved
    assert out.contents() == saved  # once closed, the same bytes again
    linked = BuildLog(str(path), lambda: (), logging.getLogger("test"))  # never opened through a link
    linked.line("build", "x")
    assert linked.snapshot()[1] == b"" and b"NOT-THE-BUILD-LOG" not in linked.contents()
    assert secret.read_text() == "NOT-THE-BUILD-LOG"  # not truncated, not written


def test_no_cause_in_plain_output():
    assert first_cause(["compiling", "done in 3s"]) == ""


@pytest.mark.parametrize(
    "line,hint",
    [
        (
            "Error: error:0308010C:digital envelope routines::unsupported  code: 'ERR_OSSL_EVP_UNSUPPORTED'",
            "openssl-legacy-provider",
        ),
        (" ERR_PNPM_IGNORED_BUILDS  Ignored build scripts: esbuild", "onlyBuiltDependencies"),
        (
            "FetchError: request to https://fonts.example/css failed, reason: getaddrinfo ENOTFOUND fonts.example",
            "internet access",
        ),
    ],
)
def test_known_failures_carry_a_hint(line, hint):
    assert hint in failure_hint(["building...", line, "    at x (y.js:1:1)"])
    assert failure_hint(["all good"]) == ""


def test_a_slow_reader_still_gets_every_line_a_finished_step_left_in_the_pipe():
    """The step's processes are gone, its last lines still in the pipe, the runtime busy: they
    are drained while they keep coming, not cut at a fixed time."""

    class SlowLog:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def line(self, step: str, text: str) -> None:
            time.sleep(0.002)  # a busy machine: 2,000 lines take 4 s to handle
            self.lines.append(text)

    proc = subprocess.Popen(
        ["sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    proc.wait()  # everything it printed is in the pipe (or taken by the reader below)
    ended = threading.Event()
    ended.set()
    log = SlowLog()
    Runner._pump(types.SimpleNamespace(out=log), proc, "build", ended)  # type: ignore[arg-type]
    assert log.lines[-1] == "line 1999" and len(log.lines) == 2000
