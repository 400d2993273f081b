"""Monorepos: one package of a workspace built through the real fcbuild process. An npm workspace
(offline: its only dependency is a sibling package), a pnpm workspace (`workspace:*`, pnpm pinned
through corepack, so it needs the registry for pnpm itself) and a yarn 4 workspace with the
node-modules linker and a registry dependency."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import oss2
import pytest

from localoss import LocalOss
from tests.archives import FIXTURES, pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import function_error, registry_allowance, start_runtime
from tests.test_e2e_build import CREDS


@pytest.fixture(scope="module")
def oss(tmp_path_factory):
    with LocalOss(str(tmp_path_factory.mktemp("oss")), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as s:
        yield s


@pytest.fixture(scope="module")
def runtime(oss):
    # this machine's registry serves packages without npm's signatures (see tests/test_e2e_corepack.py)
    rt = start_runtime(
        {"FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_COREPACK_SIGNATURES": "0", **registry_allowance()}
    )
    yield rt
    rt.kill()


def upload(oss, name, folder):
    src = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "src", region=REGION)
    src.put_object(name, pack_tar(folder))


def site(oss, key):
    return (
        oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "site", region=REGION)
        .get_object(key)
        .read()
    )


def registry():
    return subprocess.run(
        ["npm", "config", "get", "registry"], capture_output=True, text=True, check=True
    ).stdout.strip()


BUILD_COMMANDS = {
    "npm-workspace": "npm run build",
    "pnpm-workspace": "corepack pnpm@9.15.9 run build",
    "yarn-workspace": "corepack yarn@4.5.3 run build",
}


@pytest.mark.parametrize("fixture", list(BUILD_COMMANDS))
def test_one_package_of_a_workspace_builds_with_its_siblings_and_its_rebuild_is_warm(oss, runtime, fixture):
    upload(oss, f"{fixture}.tar.gz", os.path.join(FIXTURES, fixture))
    event = {
        "source": f"oss://src/{fixture}.tar.gz",
        "target": f"oss://site/{fixture}/",
        "build": {"root": "apps/web", "registry": registry()},
    }
    first = runtime.invoke(event, headers=CREDS, timeout=600)
    assert first.status == 200, first.body
    result = first.json()
    assert result["root"] == "apps/web" and result["outputDir"] == "dist"
    assert result["packageManager"]["name"] == fixture.split("-")[0]
    assert b'<h1 class="ui-banner">from the workspace</h1>' in site(oss, f"{fixture}/index.html")
    again = runtime.invoke(event, headers=CREDS, timeout=600).json()
    assert again["cache"]["hit"] == "warm" and again["files"]["uploaded"] == 0, again
    assert f"[build] $ {BUILD_COMMANDS[fixture]}" in runtime.output()


def test_a_command_can_run_from_the_workspace_root(oss, runtime):
    upload(oss, "npm-workspace.tar.gz", os.path.join(FIXTURES, "npm-workspace"))
    event = {
        "source": "oss://src/npm-workspace.tar.gz",
        "target": "oss://site/from-root/",
        "build": {"root": "apps/web", "command": "npm run build --workspace web", "command_cwd": "root"},
    }
    resp = runtime.invoke(event, headers=CREDS, timeout=600)
    assert resp.status == 200, resp.body
    assert b"ui-banner" in site(oss, "from-root/index.html")


def test_a_wrong_root_or_an_unresolved_workspace_dependency_is_named(oss, runtime, tmp_path):
    upload(oss, "npm-workspace.tar.gz", os.path.join(FIXTURES, "npm-workspace"))
    base = {"source": "oss://src/npm-workspace.tar.gz", "target": "oss://site/wrong/"}
    missing = runtime.invoke({**base, "build": {"root": "apps/shop"}}, headers=CREDS)
    assert "build.root 'apps/shop': no such folder" in function_error(missing, "InvalidSource")["errorMessage"]
    bare = runtime.invoke({**base, "build": {"root": "apps"}}, headers=CREDS)
    assert "the folder has no package.json" in function_error(bare, "InvalidSource")["errorMessage"]
    broken = tmp_path / "broken"
    shutil.copytree(os.path.join(FIXTURES, "pnpm-workspace"), broken)
    ui = json.loads((broken / "packages/ui/package.json").read_text())
    (broken / "packages/ui/package.json").write_text(json.dumps({**ui, "name": "ui-renamed"}))
    upload(oss, "broken.tar.gz", str(broken))
    resp = runtime.invoke(
        {"source": "oss://src/broken.tar.gz", "target": "oss://site/wrong/", "build": {"root": "apps/web"}},
        headers=CREDS,
    )
    message = function_error(resp, "InvalidSource")["errorMessage"]
    assert "build.root 'apps/web'" in message and "'ui' (workspace:*)" in message and "ui-renamed" in message
