"""pnpm and yarn (berry, Plug'n'Play) projects pinned through `packageManager` and run by corepack, each with its
own postinstall script and a dependency from the registry, built through the real fcbuild process.

The registry is the one npm is configured with here, named in the request as a mirror would be: corepack then
fetches the package manager from it without npm's package signatures, which a mirror does not carry.
"""

from __future__ import annotations

import os
import subprocess

import oss2
import pytest

from oss_server import LocalOss
from tests.archives import FIXTURES, pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import start_runtime
from tests.test_e2e_build import CREDS, raw

PROJECTS = {
    "pnpm": ("pnpm-site", "9.15.9", "pnpm-lock.yaml", "corepack pnpm@9.15.9 install --frozen-lockfile", "warm"),
    "yarn": ("yarn-site", "4.5.3", "yarn.lock", "corepack yarn@4.5.3 install --immutable", "miss"),
}


@pytest.fixture
def oss(tmp_path):
    with LocalOss(str(tmp_path / "oss"), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as server:
        yield server


@pytest.mark.parametrize("manager", list(PROJECTS))
def test_project_through_corepack_with_postinstall(oss, manager):
    folder, version, lockfile, install, second_hit = PROJECTS[manager]
    raw(oss, "src").put_object(f"{manager}.tar.gz", pack_tar(os.path.join(FIXTURES, folder)))
    registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=True)
    event = {
        "source": f"oss://src/{manager}.tar.gz",
        "target": f"oss://site/{manager}/",
        "build": {"registry": registry.stdout.strip()},
    }
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint})
    try:
        resp = rt.invoke(event, headers=CREDS, timeout=600)
        assert resp.status == 200, resp.body
        result = resp.json()
        assert result["packageManager"] == {"name": manager, "version": version, "lockfile": lockfile}
        assert f"[install] $ {install}" in rt.output()
        site = raw(oss, "site")
        assets = [o.key for o in oss2.ObjectIteratorV2(site, prefix=f"{manager}/assets/")]
        assert len(assets) == 1
        body = site.get_object(assets[0]).read().decode()
        assert f"{manager} true postinstall yes" in body  # the dependency and the project's own postinstall ran
        again = rt.invoke(event, headers=CREDS, timeout=600).json()
        # pnpm installs a node_modules the cache keeps; yarn's Plug'n'Play installs none (its own cache serves it)
        assert again["cache"]["hit"] == second_hit and again["files"]["uploaded"] == 0
        if manager == "yarn":
            assert again["cache"]["saved"] == "nothing installed"
    finally:
        assert rt.stop() == 0
