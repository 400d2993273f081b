"""Builds through the real fcbuild process, with the local OSS server and real node/npm.

The tiny fixture project needs no registry: its build script writes hashed assets and an
index.html, and takes knobs from the request's build.env (fail, hang, print env, no output).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import oss2
import pytest

from localoss import LocalOss
from tests.archives import FIXTURES, big_file_zip, hostile_archives, many_files_tar, pack_tar, pack_zip
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import function_error, shared_dir, start_runtime

TINY = os.path.join(FIXTURES, "tiny")
CREDS = {
    "x-fc-access-key-id": STS.access_key_id,
    "x-fc-access-key-secret": STS.access_key_secret,
    "x-fc-security-token": STS.security_token,
}
# The npm that comes with the PATH's Node: fcbuild names its exact version in the result.
NPM_VERSION = subprocess.run(["npm", "--version"], capture_output=True, text=True, check=True).stdout.strip()
ENV_SECRET = "env-only-SECRET-8c7b6a"
ENV_TOKEN = "env-only-TOKEN-5d4e3f"


@pytest.fixture(scope="module")
def oss(tmp_path_factory):
    root = tmp_path_factory.mktemp("oss")
    with LocalOss(str(root), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as server:
        yield server


def runtime_env(oss, **extra):
    env = {
        "FCBUILD_OSS_ENDPOINT": oss.endpoint,
        "FCBUILD_UPLOAD_MARGIN_S": "2",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI-env-id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ENV_SECRET,
        "ALIBABA_CLOUD_SECURITY_TOKEN": ENV_TOKEN,
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def runtime(oss):
    rt = start_runtime(runtime_env(oss))
    yield rt
    rt.kill()


def raw(oss, name):
    return oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, name, region=REGION)


def put_source(oss, key, data):
    raw(oss, "src").put_object(key, data)


def site_objects(oss, prefix):
    """key -> (content, Content-Type, Cache-Control) for the site and its manifest (not fcbuild's logs and markers)."""
    b = raw(oss, "site")
    found = {}
    for obj in oss2.ObjectIteratorV2(b, prefix=prefix):
        if "/.fcbuild/" in obj.key and not obj.key.endswith("/.fcbuild/manifest.json"):
            continue
        got = b.get_object(obj.key)
        found[obj.key] = (got.read(), got.headers.get("Content-Type"), got.headers.get("Cache-Control"))
    return found


def build(runtime, source, prefix, build=None, **kw):
    event = {"source": source, "target": {"bucket": "site", "prefix": prefix}}
    if build is not None:
        event["build"] = build
    return runtime.invoke(event, headers=CREDS, **kw)


def error_of(resp, error_type):
    return function_error(resp, error_type)["errorMessage"]


def test_build_and_deploy(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    resp = build(runtime, "oss://src/tiny.tar.gz", "app/", request_id="deploy-1")
    assert resp.status == 200, resp.body
    assert resp.headers["x-fc-status"] == "200"
    result = resp.json()
    assert result["requestId"] == "deploy-1"
    assert result["status"] == "succeeded"
    assert result["packageManager"] == {"name": "npm", "version": NPM_VERSION, "lockfile": "package-lock.json"}
    assert result["node"]["version"].startswith("v")
    assert result["outputDir"] == "dist"
    assert set(result["steps"]) == {"workspace", "source", "toolchain", "cache", "install", "build", "deploy"}
    assert result["cache"]["hit"] == "miss"  # the tiny project has no dependencies to keep
    assert result["cache"]["saved"] == "nothing installed"
    assert result["files"]["uploaded"] == 4 and result["files"]["skipped"] == 0
    assert result["log"] == "oss://site/app/.fcbuild/logs/deploy-1.log"

    objects = site_objects(oss, "app/")
    index = objects["app/index.html"]
    assert index[1:] == ("text/html; charset=utf-8", "no-cache")
    assets = {k: v for k, v in objects.items() if k.startswith("app/assets/")}
    assert len(assets) == 2
    for key, (_, ctype, cache) in assets.items():
        assert cache == "public, max-age=31536000, immutable"
        assert ctype.startswith("text/javascript" if key.endswith(".js") else "text/css")
        assert key.rsplit("/", 1)[1].encode() in index[0]
    assert objects["app/favicon.svg"][1:] == ("image/svg+xml", "no-cache")
    assert b"hello from tiny" in next(v[0] for k, v in assets.items() if k.endswith(".js"))
    with urllib.request.urlopen(oss.site_url("site", "app/")) as page:
        assert page.read() == index[0]
    log = raw(oss, "site").get_object("app/.fcbuild/logs/deploy-1.log").read().decode()
    assert "$ npm ci" in log and "[build] built index-" in log
    out = runtime.output()
    assert "deploy-1 [INFO] [build] built index-" in out
    assert "FC Invoke End RequestId: deploy-1" in out


def test_redeploy_skips_unchanged_and_uploads_changes(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    assert build(runtime, "oss://src/tiny.tar.gz", "again/").status == 200
    second = build(runtime, "oss://src/tiny.tar.gz", "again/")
    assert second.status == 200
    assert second.json()["files"] == {**second.json()["files"], "uploaded": 0, "skipped": 4, "bytes": 0}
    third = build(runtime, "oss://src/tiny.tar.gz", "again/", {"env": {"SITE_TEXT": "changed"}})
    assert third.json()["files"]["uploaded"] == 2  # the new hashed js and the index naming it
    assert b"changed" in b"".join(v[0] for k, v in site_objects(oss, "again/assets/").items())


def test_build_failure_keeps_previous_site(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    assert build(runtime, "oss://src/tiny.tar.gz", "keep/").status == 200
    before = site_objects(oss, "keep/")
    resp = build(runtime, "oss://src/tiny.tar.gz", "keep/", {"env": {"BUILD_FAIL": "1"}, "timeout_s": 120})
    message = error_of(resp, "BuildFailed")
    assert "exited with 3" in message
    assert "error TS2304: Cannot find name 'oops'." in message
    assert "build log: oss://site/keep/.fcbuild/logs/" in message
    assert site_objects(oss, "keep/") == before


def test_build_timeout_kills_the_process_group(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    pid_file = os.path.join(shared_dir(), "child.pid")
    started = time.monotonic()
    resp = build(runtime, "oss://src/tiny.tar.gz", "hang/", {"env": {"BUILD_HANG": pid_file}, "timeout_s": 4})
    assert "passed its deadline" in error_of(resp, "BuildTimeout")
    assert time.monotonic() - started < 30
    with open(pid_file) as f:
        child = int(f.read())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child), "the build's grandchild outlived the timeout"
    assert site_objects(oss, "hang/") == {}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its reaper is dead too
        return f.read().split(") ")[1][0] != "Z"


def test_missing_output(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    resp = build(runtime, "oss://src/tiny.tar.gz", "none/", {"env": {"NO_OUTPUT": "1"}})
    assert "no output" in error_of(resp, "BuildFailed")
    resp = build(runtime, "oss://src/tiny.tar.gz", "none/", {"output_dir": "public2"})
    assert "public2" in error_of(resp, "BuildFailed")


def test_missing_source(oss, runtime):
    message = error_of(build(runtime, "oss://src/does/not/exist.tar.gz", "x/"), "SourceNotFound")
    assert message.startswith("oss://src/does/not/exist.tar.gz (NoSuchKey")


def test_wrong_credentials(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    bad = {**CREDS, "x-fc-access-key-secret": "wrong-secret-771"}
    event = {"source": "oss://src/tiny.tar.gz", "target": "oss://site/x/"}
    resp = runtime.invoke(event, headers=bad)
    assert "SignatureDoesNotMatch" in error_of(resp, "AccessDenied")
    assert "wrong-secret-771" not in resp.body.decode()


def test_build_environment_has_no_credentials(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    resp = build(runtime, "oss://src/tiny.tar.gz", "env/", {"env": {"PRINT_ENV": "1", "MY_TOKEN": "request-secret-42"}})
    assert resp.status == 200, resp.body
    log = raw(oss, "site").get_object(resp.json()["log"].split("/", 3)[3]).read().decode()
    printed = [line for line in log.splitlines() if "] env " in line]
    assert any("env CI=true" in line for line in printed)
    assert any("env PATH=" in line for line in printed)
    assert not any("ALIBABA_CLOUD" in line or "env FC_" in line or "FCBUILD_" in line for line in printed)
    everything = log + runtime.output()
    for secret in (STS.access_key_secret, STS.security_token, ENV_SECRET, ENV_TOKEN, "request-secret-42"):
        assert secret not in everything
    assert "env MY_TOKEN=***" in log


def test_zip_source_and_prefix_source(oss, runtime):
    put_source(oss, "tiny.zip", pack_zip(TINY))
    assert build(runtime, "oss://src/tiny.zip", "fromzip/").status == 200
    b = raw(oss, "src")
    for root, dirs, files in os.walk(TINY):
        dirs[:] = [d for d in dirs if d not in ("node_modules", "dist")]
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                b.put_object("trees/tiny/" + os.path.relpath(full, TINY), f.read())
    resp = build(runtime, {"bucket": "src", "prefix": "trees/tiny/"}, "fromtree/")
    assert resp.status == 200, resp.body
    assert "fromtree/index.html" in site_objects(oss, "fromtree/")


@pytest.mark.parametrize("kind", list(hostile_archives("/tmp/x")))
def test_hostile_archives_are_refused(oss, runtime, tmp_path, kind):
    sentinel = str(tmp_path / "pwned")
    name, data = hostile_archives(sentinel)[kind]
    key = f"hostile/{kind.replace(' ', '-')}/{name}"
    put_source(oss, key, data)
    message = error_of(build(runtime, f"oss://src/{key}", "hostile/"), "InvalidSource")
    assert "source archive" in message
    assert not os.path.exists(sentinel)
    assert site_objects(oss, "hostile/") == {}


def test_archive_bombs_are_capped(oss, tmp_path):
    rt = start_runtime(runtime_env(oss, FCBUILD_MAX_ARCHIVE_FILES="50", FCBUILD_MAX_ARCHIVE_MB="1"))
    try:
        put_source(oss, "bomb/many.tar.gz", many_files_tar(200))
        assert "more than 50 entries" in error_of(build(rt, "oss://src/bomb/many.tar.gz", "bomb/"), "InvalidSource")
        put_source(oss, "bomb/big.zip", big_file_zip(5 * 1024 * 1024))
        assert "bytes when extracted" in error_of(build(rt, "oss://src/bomb/big.zip", "bomb/"), "InvalidSource")
        assert sorted(os.listdir(rt.workspace_root)) == ["cache", "tools", "ws"]
        assert os.listdir(os.path.join(rt.workspace_root, "ws")) == []  # every build's workspace was removed
    finally:
        assert rt.stop() == 0


def test_node_version_that_nothing_satisfies(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    message = error_of(build(runtime, "oss://src/tiny.tar.gz", "v/", {"node_version": ">=99"}), "NotAvailable")
    assert "no Node.js satisfies '>=99' (from request): this instance has v" in message


def test_request_can_name_commands_and_output(oss, runtime, tmp_path):
    project = tmp_path / "custom"
    shutil.copytree(TINY, project)
    (project / "build.js").rename(project / "make-site.js")
    put_source(oss, "custom.tar.gz", pack_tar(str(project)))
    resp = build(
        runtime,
        "oss://src/custom.tar.gz",
        "custom/",
        {"install": ["npm", "ci"], "command": "node make-site.js && mv dist site-out", "output_dir": "site-out"},
    )
    assert resp.status == 200, resp.body
    assert resp.json()["outputDir"] == "site-out"


def test_a_command_given_as_argv_sees_the_environment_a_shell_in_its_folder_would(oss, runtime):
    """No shell runs an argv command, so nothing sets PWD: fcbuild does (yarn berry's script shell reads
    it), with INIT_CWD as npm sets it and SHELL."""
    probe = (
        "const fs = require('fs'); require('./build.js');"
        "fs.writeFileSync('dist/env.json', JSON.stringify({pwd: process.env.PWD, init: process.env.INIT_CWD,"
        " shell: process.env.SHELL, cwd: process.cwd()}))"
    )
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    resp = build(runtime, "oss://src/tiny.tar.gz", "argv-env/", {"command": ["node", "-e", probe]})
    assert resp.status == 200, resp.body
    seen = json.loads(raw(oss, "site").get_object("argv-env/env.json").read())
    assert seen["pwd"] == seen["cwd"] == seen["init"] and seen["cwd"].endswith("/project"), seen
    assert seen["shell"] == "/bin/sh"


def test_a_step_killed_from_outside_says_it_was_not_its_deadline(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    command = ["node", "-e", "process.kill(process.pid, 'SIGKILL')"]
    resp = build(runtime, "oss://src/tiny.tar.gz", "killed/", {"command": command})
    message = error_of(resp, "BuildFailed")
    assert "was killed by SIGKILL, not at its deadline" in message and "out-of-memory killer" in message


def test_an_output_with_no_index_html_is_refused_unless_intended(oss, runtime, tmp_path):
    """The site would answer 404 at / while the deploy succeeded: InvalidOutput naming what the folder
    holds, and the live site stays; deploy.require_index false deploys it."""
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    assert build(runtime, "oss://src/tiny.tar.gz", "noindex/").status == 200
    live = raw(oss, "site").get_object("noindex/index.html").read()
    command = "node build.js && mv dist/index.html dist/home.html"
    message = error_of(build(runtime, "oss://src/tiny.tar.gz", "noindex/", {"command": command}), "InvalidOutput")
    assert "has no index.html at its root" in message and "home.html" in message and "require_index" in message
    assert raw(oss, "site").get_object("noindex/index.html").read() == live
    event = {
        "source": "oss://src/tiny.tar.gz",
        "target": "oss://site/noindex-ok/",
        "build": {"command": command},
        "deploy": {"require_index": False},
    }
    resp = runtime.invoke(event, headers=CREDS)
    assert resp.status == 200, resp.body
    assert raw(oss, "site").get_object("noindex-ok/home.html").read()


def test_node_from_fc_style_install_folders(oss, tmp_path):
    """FC's image keeps Node installs under /var/fc/lang/nodejs*; here a folder laid out the same way
    (nodejs20/bin/node) is searched through FCBUILD_NODE_PATHS and chosen for node_version "20"."""
    node = shutil.which("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = version.lstrip("v").split(".")[0]
    lang = tmp_path / "lang" / f"nodejs{major}" / "bin"
    lang.mkdir(parents=True)
    for tool in ("node", "npm", "npx", "corepack"):
        real = shutil.which(tool)
        if real:
            os.symlink(os.path.realpath(real) if tool == "node" else real, lang / tool)
    rt = start_runtime(runtime_env(oss, FCBUILD_NODE_PATHS=str(tmp_path / "lang" / "nodejs*")))
    try:
        put_source(oss, "tiny.tar.gz", pack_tar(TINY))
        resp = build(rt, "oss://src/tiny.tar.gz", "fcnode/", {"node_version": major})
        assert resp.status == 200, resp.body
        assert resp.json()["node"] == {"version": version, "path": str(lang), "from": "instance"}
        assert f"Node.js {version} at {lang} for '{major}' from request" in rt.output()
    finally:
        assert rt.stop() == 0


def test_signals_during_a_build_end_it_cleanly(oss):
    """SIGTERM three times while a build runs: the build's processes end within the stop's grace, the
    invoke is answered, the process exits 0 without a traceback, and no build process remains."""
    import concurrent.futures
    import signal

    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    rt = start_runtime(runtime_env(oss, FCBUILD_STOP_GRACE_S="1"))
    pid_file = os.path.join(shared_dir(), "child.pid")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(build, rt, "oss://src/tiny.tar.gz", "sig/", {"env": {"BUILD_HANG": pid_file}}, fresh=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(3):
            rt.proc.send_signal(signal.SIGTERM)
            time.sleep(0.05)
        answer = pending.result(timeout=60)
    assert rt.proc.wait(timeout=30) == 0, rt.output()
    assert answer.status == 404 and answer.json()["errorType"] in ("BuildFailed", "BuildTimeout")
    with open(pid_file) as f:
        assert not _alive(int(f.read()))
    assert "Traceback" not in rt.output()


def test_settings_are_logged_and_secrets_are_redacted(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    build_spec = {
        "env": {"PRINT_ENV": "1", "MODE": "production", "FLAG": "true"},
        "secrets": {"NPM_PUBLISH": "s3cret-value-998"},
    }
    resp = build(runtime, "oss://src/tiny.tar.gz", "settings/", build_spec)
    assert resp.status == 200, resp.body
    log = raw(oss, "site").get_object(resp.json()["log"].split("/", 3)[3]).read().decode()
    assert "env MODE=production" in log and "env FLAG=true" in log  # settings stay readable
    assert "env NPM_PUBLISH=***" in log and "s3cret-value-998" not in log + runtime.output()
    short = build(runtime, "oss://src/tiny.tar.gz", "settings/", {"secrets": {"PIN": "1234"}})
    assert "cannot be redacted reliably" in error_of(short, "InvalidRequest")
    short_env = build(runtime, "oss://src/tiny.tar.gz", "settings/", {"env": {"API_KEY": "abc"}})
    assert "build.env.API_KEY" in error_of(short_env, "InvalidRequest")


def test_a_site_under_a_prefix_that_names_root_absolute_urls_gets_a_warning(oss, runtime):
    put_source(oss, "tiny.tar.gz", pack_tar(TINY))
    under = build(runtime, "oss://src/tiny.tar.gz", "shop/").json()
    assert "deployed under shop/" in under["warnings"][0] and "/assets/index-" in under["warnings"][0]
    at_root = build(runtime, "oss://src/tiny.tar.gz", "").json()
    assert "warnings" not in at_root
