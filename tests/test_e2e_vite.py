"""The sample Vite app (demo/site, with its lockfile) installed from the npm registry and built for real."""

from __future__ import annotations

import os
import re

import oss2
import pytest

from localoss import LocalOss
from tests.archives import pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import start_runtime

SITE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo", "site")
CREDS = {
    "x-fc-access-key-id": STS.access_key_id,
    "x-fc-access-key-secret": STS.access_key_secret,
    "x-fc-security-token": STS.security_token,
}


@pytest.fixture
def oss(tmp_path):
    with LocalOss(str(tmp_path / "oss"), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as server:
        yield server


def test_vite_app_builds_and_deploys(oss, tmp_path):
    b_src = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "src", region=REGION)
    b_site = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "site", region=REGION)
    b_src.put_object("vite.tar.gz", pack_tar(SITE, top="fcbuild-demo-site-main"))
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint})
    try:
        event = {
            "source": "oss://src/vite.tar.gz",
            "target": {"bucket": "site", "prefix": "vite/"},
            "build": {"env": {"VITE_BUILD_LABEL": "from-the-test"}},
        }
        resp = rt.invoke(event, headers=CREDS, timeout=600)
        assert resp.status == 200, resp.body
        result = resp.json()
        assert result["packageManager"]["lockfile"] == "package-lock.json"
        assert result["outputDir"] == "dist"
        assert "warnings" not in result  # relative asset URLs, but no router that makes deep links
        index = b_site.get_object("vite/index.html").read().decode()
        assets = re.findall(r'(?:src|href)="\./(assets/[^"]+)"', index)
        assert len(assets) == 2
        for rel in assets:
            got = b_site.get_object("vite/" + rel)
            body = got.read()
            assert got.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            if rel.endswith(".js"):
                assert got.headers["Content-Type"] == "text/javascript; charset=utf-8"
                assert b"from-the-test" in body  # the request's env reached the build
        again = rt.invoke(event, headers=CREDS, timeout=600).json()
        assert again["files"]["uploaded"] == 0
    finally:
        assert rt.stop() == 0
