"""A pnpm project pinned through `packageManager` (run by corepack), with its own postinstall script and a
dependency from the registry, built through the real fcbuild process.

The registry is the one npm is configured with here, named in the request as a mirror would be: corepack then
fetches pnpm from it without npm's package signatures, which a mirror does not carry.
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

PNPM_SITE = os.path.join(FIXTURES, "pnpm-site")


@pytest.fixture
def oss(tmp_path):
    with LocalOss(str(tmp_path / "oss"), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as server:
        raw(server, "src").put_object("pnpm.tar.gz", pack_tar(PNPM_SITE))
        yield server


def test_pnpm_project_through_corepack_with_postinstall(oss):
    registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=True)
    event = {
        "source": "oss://src/pnpm.tar.gz",
        "target": "oss://site/pnpm/",
        "build": {"registry": registry.stdout.strip()},
    }
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint})
    try:
        resp = rt.invoke(event, headers=CREDS, timeout=600)
        assert resp.status == 200, resp.body
        result = resp.json()
        assert result["packageManager"] == {"name": "pnpm", "version": "9.15.9", "lockfile": "pnpm-lock.yaml"}
        assert "[install] $ corepack pnpm@9.15.9 install --frozen-lockfile" in rt.output()
        site = raw(oss, "site")
        assets = [o.key for o in oss2.ObjectIteratorV2(site, prefix="pnpm/assets/")]
        assert len(assets) == 1
        body = site.get_object(assets[0]).read().decode()
        assert "pnpm true postinstall yes" in body  # the dependency and the project's own postinstall ran
        again = rt.invoke(event, headers=CREDS, timeout=600).json()
        assert again["cache"]["hit"] == "warm" and again["files"]["uploaded"] == 0
    finally:
        assert rt.stop() == 0
