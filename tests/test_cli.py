"""The `fcbuild` command as a user runs it: a subprocess against the local OSS server, the FC API
stand-in (which checks the official SDK's signature and calls the real runtime as FC does) and the
real runtime."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import oss2
import pytest

import localfc
from fcbuild_cli import pack
from localoss import LocalOss
from localoss.faults import FaultRule
from tests.conftest import AK, REGION, ROOT, STS
from tests.runtime_proc import start_runtime
from tests.test_e2e_build import TINY

FUNCTION = "fcbuild"
CREDS_ENV = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": STS.access_key_id,
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STS.access_key_secret,
    "ALIBABA_CLOUD_SECURITY_TOKEN": STS.security_token,
}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    with LocalOss(str(base / "oss"), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as oss:
        fc = localfc.serve(
            address=("127.0.0.1", 0),
            access_key_id=STS.access_key_id,
            access_key_secret=STS.access_key_secret,
            security_token=STS.security_token,
            runtime="",
            functions=(FUNCTION,),
        )
        rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, **CREDS_ENV})
        fc.runtime = f"127.0.0.1:{rt.port}"
        yield oss, fc, rt
        rt.kill()
        fc.shutdown()


def project(tmp_path, name="web", target="oss://site/cli/"):
    folder = tmp_path / name
    shutil.copytree(TINY, folder)
    config = {
        "target": target,
        "deploy": {"function": FUNCTION, "region": REGION, "source": "oss://src/uploads/"},
    }
    (folder / "fcbuild.json").write_text(json.dumps(config))
    return folder


def cli_env(cloud, env=None, home=None, creds=True):
    oss, fc, _ = cloud
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": ROOT,
        "HOME": str(home or "/nonexistent-home"),
        "FCBUILD_OSS_ENDPOINT": oss.endpoint,
        "FCBUILD_FC_ENDPOINT": f"http://127.0.0.1:{fc.server_address[1]}",
        **(CREDS_ENV if creds else {}),
        **(env or {}),
    }


def fcbuild(cloud, *args, env=None, home=None, creds=True):
    full = cli_env(cloud, env, home, creds)
    done = subprocess.run(
        [sys.executable, "-m", "fcbuild_cli", *args], capture_output=True, text=True, env=full, timeout=600
    )
    for secret in (STS.access_key_secret, STS.security_token):
        assert secret not in done.stdout and secret not in done.stderr
    return done


def started(env, *args):
    """`fcbuild ARGS` running, its output read as it comes."""
    argv = [sys.executable, "-m", "fcbuild_cli", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def with_build_script(folder, script: str) -> None:
    package = json.loads((folder / "package.json").read_text())
    package["scripts"]["build"] = script
    (folder / "package.json").write_text(json.dumps(package))


def site(oss) -> oss2.Bucket:
    return oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "site", region=REGION)


def test_deploy_then_again_unchanged_then_a_change_and_a_rollback_byte_for_byte(cloud, tmp_path):
    oss, fc, _ = cloud
    folder = project(tmp_path)
    first = fcbuild(cloud, "deploy", str(folder))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "oss://site/cli/"
    assert "uploaded oss://src/uploads/fcbuild-src-" in first.stderr and "deployed oss://site/cli/" in first.stderr
    before = site(oss).get_object("cli/index.html").read()
    invocations = len(fc.invocations)
    again = fcbuild(cloud, "deploy", str(folder))
    assert again.returncode == 0, again.stderr
    assert "unchanged, not uploaded" in again.stderr and "0 files uploaded" in again.stderr
    assert len(fc.invocations) == invocations + 1
    (folder / "CHANGELOG.md").write_text("a change\n")
    with open(folder / "build.js", "a", encoding="utf-8") as f:
        f.write("\n// a change in the build\n")
    changed = fcbuild(cloud, "deploy", str(folder), "--json")
    assert changed.returncode == 0, changed.stderr
    result = json.loads(changed.stdout)
    assert result["status"] == "succeeded" and result["target"] == "oss://site/cli/"
    assert "uploaded oss://src/uploads/" in changed.stderr
    releases = fcbuild(cloud, "releases", "oss://site/cli/", "--config", str(folder / "fcbuild.json"))
    assert releases.returncode == 0, releases.stderr
    assert releases.stdout.startswith("live ") and len(releases.stdout.splitlines()) >= 2
    back = fcbuild(cloud, "rollback", "oss://site/cli/", "--config", str(folder / "fcbuild.json"))
    assert back.returncode == 0, back.stderr
    assert site(oss).get_object("cli/index.html").read() == before


def test_a_failing_build_exits_1_with_the_cause_and_the_logs_tail(cloud, tmp_path):
    folder = project(tmp_path, "broken", target="oss://site/cli-broken/")
    with_build_script(folder, "echo compiling the broken page && exit 3")
    done = fcbuild(cloud, "deploy", str(folder))
    assert done.returncode == 1, done.stderr
    assert "failed: BuildFailed:" in done.stderr
    assert "compiling the broken page" in done.stderr  # from the saved log's tail
    request_id = next(
        line.split("request ")[1].split(":")[0] for line in done.stderr.splitlines() if "request " in line
    )
    status = fcbuild(
        cloud, "status", request_id, "--target", "oss://site/cli-broken/", "--config", str(folder / "fcbuild.json")
    )
    assert status.returncode == 1 and status.stdout.strip() == "failed", status.stderr
    logs = fcbuild(
        cloud, "logs", request_id, "--target", "oss://site/cli-broken/", "--config", str(folder / "fcbuild.json")
    )
    assert logs.returncode == 0 and "compiling the broken page" in logs.stdout


def test_credentials_from_an_aliyun_profile_and_one_clear_line_for_what_is_missing(cloud, tmp_path):
    folder = project(tmp_path, "profile", target="oss://site/cli-profile/")
    home = tmp_path / "home"
    (home / ".aliyun").mkdir(parents=True)
    profile = {
        "current": "default",
        "profiles": [
            {
                "name": "default",
                "mode": "AK",
                "access_key_id": "wrong",
                "access_key_secret": "wrong",
                "region_id": REGION,
            },
            {
                "name": "ci",
                "mode": "StsToken",
                "access_key_id": STS.access_key_id,
                "access_key_secret": STS.access_key_secret,
                "sts_token": STS.security_token,
                "region_id": REGION,
            },
        ],
    }
    (home / ".aliyun" / "config.json").write_text(json.dumps(profile))
    done = fcbuild(cloud, "deploy", str(folder), "--profile", "ci", home=home, creds=False)
    assert done.returncode == 0, done.stderr
    wrong = fcbuild(cloud, "deploy", str(folder), home=home, creds=False)  # the current profile's key is refused
    assert wrong.returncode == 2 and "oss://src" in wrong.stderr, wrong.stderr
    none = fcbuild(
        cloud,
        "deploy",
        str(folder),
        home=tmp_path / "empty-home",
        creds=False,
        env={"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"},
    )
    assert none.returncode == 2 and "no Alibaba Cloud credentials" in none.stderr, none.stderr
    (folder / "fcbuild.json").write_text(
        json.dumps({"target": "oss://site/x/", "deploy": {"region": REGION, "source": "oss://src/u/"}})
    )
    missing = fcbuild(cloud, "deploy", str(folder))
    assert missing.returncode == 2 and "no function: pass --function" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) <= 2, missing.stderr
    usage = fcbuild(cloud, "deploy", str(folder), "--target", "s3://nope")
    assert usage.returncode == 2


def test_the_archive_is_the_same_bytes_for_the_same_files_and_leaves_out_what_it_should(tmp_path):
    folder = project(tmp_path, "packed")
    (folder / "node_modules" / "dep").mkdir(parents=True)
    (folder / "node_modules" / "dep" / "index.js").write_text("x")
    (folder / "dist").mkdir()
    (folder / "dist" / "old.html").write_text("old output")
    (folder / "notes.log").write_text("local notes")
    (folder / ".fcbuildignore").write_text("*.log\n")
    files = pack.project_files(str(folder), "dist")
    assert "package.json" in files and "fcbuild.json" in files
    assert not any(f.startswith(("node_modules/", "dist/")) or f.endswith(".log") for f in files)
    one = pack.pack(str(folder), files)
    os.utime(folder / "package.json", (1, 1))
    assert pack.pack(str(folder), pack.project_files(str(folder), "dist")) == one  # times do not matter
    # A git work tree: what git tracks and does not ignore.
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    (folder / ".gitignore").write_text("secret.env\n")
    (folder / "secret.env").write_text("TOKEN=x")
    tracked = pack.project_files(str(folder), "dist")
    assert "secret.env" not in tracked and ".gitignore" in tracked and "package.json" in tracked
    assert not any(f.startswith(("node_modules/", ".git/")) for f in tracked)


def test_the_archive_reads_back_as_packed_through_tar_long_names_links_modes_and_pipes_included(tmp_path):
    folder = tmp_path / "odd"
    deep = folder / "a" / ("b" * 120) / "c"
    deep.mkdir(parents=True)
    (deep / "file.txt").write_text("deep")
    (folder / ("n" * 130 + ".txt")).write_text("long name")
    (folder / "run.sh").write_text("#!/bin/sh\n")
    (folder / "run.sh").chmod(0o700)
    (folder / "empty").write_bytes(b"")
    (folder / "block").write_bytes(b"x" * 512)
    (folder / "big").write_bytes(os.urandom(3 << 20))
    (folder / "ünï.txt").write_text("utf8")
    os.symlink("run.sh", folder / "link")
    os.symlink("x" * 150, folder / "longlink")
    os.mkfifo(folder / "pipe")  # opened, it would wait for a writer: left out instead
    files = pack.project_files(str(folder), "dist")
    assert "pipe" in files  # listed, like any name in the folder
    archive = tmp_path / "odd.tgz"
    archive.write_bytes(pack.pack(str(folder), files))
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "xzf", str(archive), "-C", str(out)], check=True)
    got = out / "project"
    for rel in ("a/" + "b" * 120 + "/c/file.txt", "n" * 130 + ".txt", "run.sh", "empty", "block", "big", "ünï.txt"):
        assert (got / rel).read_bytes() == (folder / rel).read_bytes(), rel
    assert os.stat(got / "run.sh").st_mode & 0o777 == 0o755 and os.stat(got / "block").st_mode & 0o777 == 0o644
    assert os.readlink(got / "link") == "run.sh" and os.readlink(got / "longlink") == "x" * 150
    assert not (got / "pipe").exists()
    listing = subprocess.run(["tar", "tvzf", str(archive)], check=True, capture_output=True, text=True).stdout
    assert all(" 0/0 " in line and " 1970-01-01 " in line for line in listing.splitlines()), listing


def test_logs_follow_shows_a_line_while_the_build_still_runs(cloud, tmp_path):
    oss, fc, _ = cloud
    folder = project(tmp_path, "slow", target="oss://site/cli-slow/")
    with_build_script(folder, "echo EARLY-LINE-OF-THE-BUILD && sleep 8 && node build.js")
    queued = fcbuild(cloud, "deploy", str(folder), "--async")
    assert queued.returncode == 0, queued.stderr
    request_id = queued.stdout.strip()
    oss_env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": ROOT,
        "HOME": "/nonexistent-home",
        "FCBUILD_OSS_ENDPOINT": oss.endpoint,
        **CREDS_ENV,
    }
    follow = started(oss_env, "logs", request_id, "--follow", "--config", str(folder / "fcbuild.json"))
    seen_while_running = None
    lines = []
    for line in follow.stdout:
        lines.append(line)
        if "EARLY-LINE-OF-THE-BUILD" in line and seen_while_running is None:
            record = next(r for r in fc.invocations if r["requestId"] == request_id)
            seen_while_running = record["state"] == "Running"
    assert follow.wait(timeout=120) == 0, follow.stderr.read()
    assert seen_while_running is True, lines
    assert any("fcbuild" in line or "[build]" in line for line in lines[1:])  # the rest followed to the end
    # deploy shows the build's output as it scrolls by, on stderr
    with_build_script(folder, "echo SHOWN-DURING-DEPLOY && sleep 4 && node build.js")
    done = fcbuild(cloud, "deploy", str(folder))
    assert done.returncode == 0 and "SHOWN-DURING-DEPLOY" in done.stderr, done.stderr


def test_ctrl_c_while_building_says_what_goes_on_in_fc_and_the_build_still_lands(cloud, tmp_path):
    oss, _, _ = cloud
    folder = project(tmp_path, "interrupted", target="oss://site/cli-interrupted/")
    with_build_script(folder, "echo STARTED && sleep 6 && node build.js")
    proc = started(cli_env(cloud), "deploy", str(folder))
    seen = []
    for line in proc.stderr:  # the watcher names the request once its status appears
        seen.append(line)
        if re.match(r"\s+request \S+: ", line):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=30) == 130, seen + [rest]
    request_id = re.match(r"\s+request (\S+): ", seen[-1])[1]
    assert f"interrupted: the build goes on in FC (request {request_id}: fcbuild status {request_id}" in rest, rest
    assert "Traceback" not in rest
    deadline = time.monotonic() + 120
    while not site(oss).object_exists("cli-interrupted/index.html"):
        assert time.monotonic() < deadline, "the interrupted deploy's build never landed"
        time.sleep(1)
    status = fcbuild(cloud, "status", request_id, "--config", str(folder / "fcbuild.json"))
    assert (status.returncode, status.stdout.strip()) == (0, "succeeded"), status.stderr


def test_ctrl_c_while_a_large_archive_goes_up_leaves_no_object_and_the_next_deploy_goes_on(cloud, tmp_path):
    oss, fc, _ = cloud
    home = tmp_path / "home"
    home.mkdir()
    folder = project(tmp_path, "large", target="oss://site/cli-large/")
    (folder / "blob.bin").write_bytes(os.urandom(20 << 20))  # incompressible: three parts of 8 MB
    files = pack.project_files(str(folder), "dist")
    key = f"uploads/fcbuild-src-{pack.digest(pack.pack(str(folder), files))[:32]}.tar.gz"
    faults = oss.server.faults
    held = faults.add(FaultRule(method="PUT", key=key, operation="upload_part", skip=1, count=1, delay_s=30))
    invoked = len(fc.invocations)
    proc = started(cli_env(cloud, home=home), "deploy", str(folder))
    try:
        deadline = time.monotonic() + 120
        while held.matched < 2:  # the first part is up, the second held by the server
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        faults.clear()
    stderr = proc.stderr.read()
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert len(fc.invocations) == invoked  # no build started
    src = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "src", region=REGION)
    assert not src.object_exists(key)  # nothing half-uploaded
    parts_before = oss.server.counts.get("upload_part", 0)
    again = fcbuild(cloud, "deploy", str(folder), home=home)
    assert again.returncode == 0, again.stderr
    assert oss.server.counts["upload_part"] - parts_before == 2  # parts 2 and 3: part 1 was kept
    assert src.get_object(key).read() == pack.pack(str(folder), files)
    assert not os.listdir(home / ".fcbuild" / "archives")  # the kept archive goes once it is up


def test_every_command_has_help_with_examples_and_colour_only_on_a_terminal(tmp_path):
    import pty

    for command in ("deploy", "releases", "rollback", "status", "logs", "dev"):
        shown = subprocess.run(
            [sys.executable, "-m", "fcbuild_cli", command, "--help"], capture_output=True, text=True, cwd=ROOT
        )
        assert shown.returncode == 0 and f"examples:\n  fcbuild {command}" in shown.stdout, shown.stdout

    def missing_region(on_terminal: bool, no_color: bool) -> str:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "HOME": str(tmp_path), **CREDS_ENV}
        if no_color:
            env["NO_COLOR"] = "1"
        argv = [sys.executable, "-m", "fcbuild_cli", "deploy", str(tmp_path)]
        if not on_terminal:
            done = subprocess.run(argv, capture_output=True, text=True, env=env)
            assert done.returncode == 2
            return done.stderr
        leader, follower = pty.openpty()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower, env=env)
        os.close(follower)
        got = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            got += chunk
        os.close(leader)
        assert proc.wait(timeout=30) == 2
        return got.decode()

    coloured = missing_region(on_terminal=True, no_color=False)
    assert "\033[31mfcbuild: no region: pass --region" in coloured, coloured
    for plain in (missing_region(True, True), missing_region(False, False)):
        assert "fcbuild: no region: pass --region" in plain and "\033[" not in plain, plain


def test_dev_builds_and_serves_a_project_that_chromium_renders_deep_links_included(tmp_path):
    from tests.browser import CHROMIUM, open_page
    from tests.test_e2e_vite import SITE

    assert CHROMIUM, "the served site is checked in headless Chromium: apt-get install chromium"
    folder = tmp_path / "vite-site"
    shutil.copytree(SITE, folder, ignore=shutil.ignore_patterns("node_modules", "dist"))
    # Deep links of a single-page app need asset URLs from the root: the sample's relative base ("./",
    # to work under any prefix) would send /some/deep/link's page to /some/deep/assets/.
    config = folder / "vite.config.js"
    config.write_text(config.read_text().replace('base: "./"', 'base: "/"'))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "HOME": str(tmp_path)}
    argv = [sys.executable, "-m", "fcbuild_cli", "dev", str(folder), "--port", str(port)]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        said = _until(proc, "serving at")
        assert f"http://127.0.0.1:{port}/" in said, said
        page = open_page(f"http://127.0.0.1:{port}/", str(tmp_path / "dev.png"))
        assert "Hello from Function Compute" in page.text, page.text
        assert not page.console_errors and not [f for f in page.failed if "favicon.ico" not in f], (
            page.console_errors,
            page.failed,
        )
        deep = open_page(f"http://127.0.0.1:{port}/some/deep/link")  # a single-page app's route
        assert "Hello from Function Compute" in deep.text, deep.text
        main_js = folder / "src" / "main.js"
        main_js.write_text(main_js.read_text().replace("Hello from Function Compute", "Hello again, rebuilt"))
        proc.stdin.write("\n")  # Enter rebuilds
        proc.stdin.flush()
        _until(proc, "serving at")
        assert "Hello again, rebuilt" in open_page(f"http://127.0.0.1:{port}/").text
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0


def _until(proc, text: str, timeout: float = 300) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError("".join(seen))
