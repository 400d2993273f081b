"""A deployed page as a user sees it: headless Chromium opens it (through the DevTools protocol),
and the test gets the rendered text, a screenshot, the console's errors and every request that
failed or answered 4xx/5xx."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

import websocket  # websocket-client

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@dataclass
class Page:
    url: str
    text: str = ""
    console_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "<status or error> <url>"
    loaded: list[str] = field(default_factory=list)  # every URL answered 2xx/3xx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_page(url: str, screenshot: str | None = None, *, settle_s: float = 1.0, timeout_s: float = 60) -> Page:
    assert CHROMIUM, "headless Chromium is needed (apt-get install chromium)"
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="fcbuild-chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "--window-size=1024,768", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        target = None
        while target is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                    target = next(t for t in json.load(r) if t.get("type") == "page")
            except (OSError, StopIteration, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout_s, suppress_origin=True)
        page = Page(url)
        ids = iter(range(1, 1_000_000))
        pending: dict[int, dict] = {}
        statuses: dict[str, int] = {}

        def send(method: str, **params: object) -> int:
            n = next(ids)
            ws.send(json.dumps({"id": n, "method": method, "params": params}))
            return n

        def handle(msg: dict) -> None:
            method, params = msg.get("method"), msg.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                page.console_errors.append(
                    " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
                )
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                page.console_errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                page.console_errors.append(params["entry"].get("text", ""))
            elif method == "Network.responseReceived":
                response = params["response"]
                statuses[params["requestId"]] = response["status"]
                (page.failed if response["status"] >= 400 else page.loaded).append(
                    f"{response['status']} {response['url']}" if response["status"] >= 400 else response["url"]
                )
            elif method == "Network.loadingFailed":
                page.failed.append(f"{params.get('errorText')} {params.get('requestId')}")

        def wait_for(n: int) -> dict:
            while n not in pending:
                msg = json.loads(ws.recv())
                if "id" in msg:
                    pending[msg["id"]] = msg
                else:
                    handle(msg)
            return pending.pop(n)

        for method in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
            wait_for(send(method))
        wait_for(send("Page.navigate", url=url))
        ws.settimeout(0.2)
        stop = time.monotonic() + settle_s
        loaded = False
        while time.monotonic() < stop or not loaded:
            if time.monotonic() > deadline:
                break
            try:
                msg = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if msg.get("method") == "Page.loadEventFired":
                loaded = True
                stop = time.monotonic() + settle_s
            elif "id" in msg:
                pending[msg["id"]] = msg
            else:
                handle(msg)
        ws.settimeout(timeout_s)
        result = wait_for(send("Runtime.evaluate", expression="document.body ? document.body.innerText : ''"))
        page.text = result.get("result", {}).get("result", {}).get("value", "")
        if screenshot:
            shot = wait_for(send("Page.captureScreenshot", format="png"))
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["result"]["data"]))
        ws.close()
        return page
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":  # python -m tests.browser URL [screenshot.png]
    import sys

    shown = open_page(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    print(
        json.dumps({"text": shown.text[:500], "console_errors": shown.console_errors, "failed": shown.failed}, indent=2)
    )
    sys.exit(1 if shown.console_errors or shown.failed else 0)
