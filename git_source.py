"""A project from a git repository: a shallow fetch of one ref (a branch, a tag or a commit) with the
instance's `git`, run by the runtime (not the build's user).

The token travels only in git's environment (`GIT_CONFIG_*`: an `http.extraHeader` of HTTP basic
auth), never on a command line (which every process can read in /proc), never in `.git/config`,
and never in the build's environment; it is redacted like any credential. `.git` is removed before
the build, so nothing of the remote stays in the project.

git follows no redirect (a token would go where the redirect points), and speaks https (http only
for a repository named with it) and nothing else: no ssh, file or git transport for submodules,
which would run as root with the runtime's network position.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from errors import BuildTimeout, InvalidSource, NotAvailable, SourceNotFound
from settings import allowed_env

SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")
TIMEOUT_S = 600


def fetch(
    url: str,
    ref: str,
    dest: str,
    *,
    token: str,
    submodules: bool,
    launch_env: Mapping[str, str],
    redact: Any,
    log: Any,
) -> str:
    """Check out `ref` of `url` into `dest` (created); returns the commit's full sha."""
    git = shutil.which("git", path=launch_env.get("PATH") or os.defpath)
    if git is None:
        raise NotAvailable("git sources need git on this instance (add it with a layer), or upload an archive")
    # The same allowlist as a build's environment (locale, proxies, CA files), with PATH and the
    # library path as they were before a frozen bootloader changed them.
    env = allowed_env(launch_env)
    if launch_env.get("PATH"):
        env["PATH"] = launch_env["PATH"]
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": dest + ".home"})
    config = [
        ("http.followRedirects", "false"),
        ("protocol.allow", "never"),
        ("protocol.https.allow", "always"),
        ("protocol.http.allow", "always" if url.startswith("http://") else "never"),
    ]
    if token:  # for the repository's own host only: never for a submodule's elsewhere
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        origin = "/".join(url.split("/", 3)[:3]) + "/"
        config.append((f"http.{origin}.extraHeader", f"Authorization: Basic {basic}"))
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    os.makedirs(dest)
    os.makedirs(env["HOME"], exist_ok=True)

    def git_run(*args: str, what: str) -> str:
        try:
            done = subprocess.run(
                [git, *args],
                cwd=dest,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise BuildTimeout(f"git {what} took over {TIMEOUT_S}s") from None
        if done.returncode != 0:
            message = redact((done.stderr or done.stdout).strip())[-1500:]
            lowered = message.lower()
            if "redirect" in lowered or re.search(r"returned error: 30[12378]\b", lowered):
                raise InvalidSource(
                    f"git {what} of {redact(url)}: the server answered with a redirect, which is not followed "
                    f"(name the repository's final URL) ({message})"
                )
            if any(t in lowered for t in ("authentication failed", "could not read username", " 401", " 403")):
                raise InvalidSource(f"git {what} of {redact(url)} was refused: check the token ({message})")
            if any(
                t in lowered
                for t in (
                    "couldn't find remote ref",
                    "not found in upstream",
                    "not our ref",
                    "unknown revision",
                    "did not match any",
                )
            ):
                raise SourceNotFound(f"git {what}: {redact(url)} has no ref {ref!r} ({message})")
            raise InvalidSource(f"git {what} of {redact(url)} failed: {message}")
        return done.stdout

    try:
        if SHA_RE.match(ref):  # a commit: servers serve unadvertised commits only in full fetches
            git_run("clone", "--quiet", "--no-checkout", "--no-tags", url, ".", what="fetch")
            git_run("checkout", "--quiet", "--detach", ref, what="checkout")
        else:  # a branch or a tag (HEAD: the remote's default branch), one commit deep
            branch = [] if ref == "HEAD" else ["--branch", ref]
            git_run("clone", "--quiet", "--depth", "1", "--no-tags", "--single-branch", *branch, url, ".", what="fetch")
        if submodules:
            git_run("submodule", "update", "--init", "--recursive", "--depth", "1", what="submodule update")
        commit = git_run("rev-parse", "HEAD", what="rev-parse").strip()
    finally:
        shutil.rmtree(env["HOME"], ignore_errors=True)
    log.info("fetched %s at %s (%s)", redact(url), ref, commit)
    shutil.rmtree(os.path.join(dest, ".git"), ignore_errors=True)
    return commit
