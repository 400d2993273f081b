"""The minimal request (source and target) builds the frameworks of the table, through the real
fcbuild process with packages from the npm registry: a VitePress documentation site (script
`docs:build`, output `docs/.vitepress/dist`), a Hexo blog (output `public/`, written by the build) and
a uni-app H5 site (script `build:h5`, output `dist/build/h5`)."""

from __future__ import annotations

import os

import oss2
import pytest

from localoss import LocalOss
from tests.archives import FIXTURES, pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import start_runtime
from tests.test_e2e_build import CREDS


@pytest.fixture(scope="module")
def oss(tmp_path_factory):
    with LocalOss(str(tmp_path_factory.mktemp("oss")), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as s:
        yield s


@pytest.fixture(scope="module")
def runtime(oss):
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint})
    yield rt
    rt.kill()


@pytest.mark.parametrize(
    "fixture,name,output,page,text",
    [
        ("vitepress-site", "VitePress", "docs/.vitepress/dist", "index.html", b"Hello from VitePress"),
        ("hexo-site", "Hexo", "public", "2026/11/01/hello/index.html", b"Hello from Hexo"),
        ("uniapp-h5", "uni-app (H5)", "dist/build/h5", "assets/pages-index-index.", b"Hello from uni-app"),
    ],
)
def test_the_minimal_request_builds_the_framework(oss, runtime, fixture, name, output, page, text):
    bucket = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "src", region=REGION)
    bucket.put_object(f"{fixture}.tar.gz", pack_tar(os.path.join(FIXTURES, fixture)))
    resp = runtime.invoke(
        {"source": f"oss://src/{fixture}.tar.gz", "target": f"oss://site/{fixture}/"}, headers=CREDS, timeout=600
    )
    assert resp.status == 200, resp.body
    result = resp.json()
    assert result["framework"]["name"] == name and result["framework"]["commandFrom"] == "table"
    assert result["outputDir"] == output
    site = oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, "site", region=REGION)
    assert b"<html" in site.get_object(f"{fixture}/index.html").read()
    # a page, or the hashed chunk whose name starts with `page`
    key = page if page.endswith(".html") else next(oss2.ObjectIteratorV2(site, prefix=f"{fixture}/{page}")).key
    assert text in site.get_object(key if key.startswith(f"{fixture}/") else f"{fixture}/{key}").read()
    assert f"framework {name}" in runtime.output()
