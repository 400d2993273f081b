"""pnpm and yarn (berry, Plug'n'Play) projects pinned through `packageManager` and run by corepack, each with its
own postinstall script and a dependency from the registry, built through the real fcbuild process.

The registry is the one npm is configured with here, named in the request as a mirror would be: corepack then
fetches the package manager from it without npm's package signatures, which a mirror does not carry.
"""

from __future__ import annotations

import json
import os
import subprocess

import oss2
import pytest

from localoss import LocalOss
from tests.archives import FIXTURES, pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import registry_allowance, shared_dir, start_runtime
from tests.test_e2e_build import CREDS, raw

# This machine's registry serves npm's packages without their signatures under the official name (a
# proxy), as a mirror does: the function setting that turns corepack's signature check off for it.
NO_SIGNATURES = {"FCBUILD_COREPACK_SIGNATURES": "0"}

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
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, **NO_SIGNATURES, **registry_allowance()})
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


@pytest.mark.parametrize("version", ["9.15.9", "10.34.8", "11.28.13"])
def test_each_pnpm_major_installs_from_the_requests_registry_not_the_projects_npmrc(oss, tmp_path, version):
    """The project's .npmrc names a mirror that does not answer; the request names the registry: pnpm
    (9 reads npm_config_*, 10 as well, 11 pnpm_config_* only: all are set) installs from the request's.
    pnpm 11 needs Node 22.13, which this machine does not have: its project says so in .nvmrc, and
    the runtime fetches that Node."""
    import json as _json
    import shutil

    project = tmp_path / "project"
    shutil.copytree(os.path.join(FIXTURES, "pnpm-site"), project)
    package = _json.loads((project / "package.json").read_text())
    (project / "package.json").write_text(_json.dumps({**package, "packageManager": f"pnpm@{version}"}))
    (project / ".npmrc").write_text("registry=http://127.0.0.1:9/\n")
    if version.startswith("11."):
        (project / ".nvmrc").write_text("22\n")
    key = f"pnpm-{version}.tar.gz"
    raw(oss, "src").put_object(key, pack_tar(str(project)))
    registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=True)
    event = {"source": f"oss://src/{key}", "target": f"oss://site/pnpm-{version}/"}
    event["build"] = {"registry": registry.stdout.strip()}
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, **NO_SIGNATURES, **registry_allowance()})
    try:
        resp = rt.invoke(event, headers=CREDS, timeout=600)
        assert resp.status == 200, resp.body
        assert resp.json()["packageManager"]["version"] == version
    finally:
        assert rt.stop() == 0


def test_a_yarn_release_the_project_commits_runs_as_it_is(oss, tmp_path):
    """.yarnrc.yml names the project's own release (yarnPath, as `yarn set version` commits it): that
    file runs the install and the build, and no yarn is downloaded (no corepack install)."""
    import json as _json
    import shutil

    project = tmp_path / "project"
    shutil.copytree(os.path.join(FIXTURES, "yarn-site"), project)
    pack = tmp_path / "pack"
    pack.mkdir()
    subprocess.run(["npm", "pack", "@yarnpkg/cli-dist@4.5.3"], cwd=pack, check=True, capture_output=True)
    subprocess.run(["tar", "xzf", next(pack.glob("*.tgz")).name], cwd=pack, check=True)
    (project / ".yarn" / "releases").mkdir(parents=True)
    shutil.copy(pack / "package" / "bin" / "yarn.js", project / ".yarn" / "releases" / "yarn-4.5.3.cjs")
    (project / ".yarnrc.yml").write_text("yarnPath: .yarn/releases/yarn-4.5.3.cjs\nenableTelemetry: false\n")
    package = _json.loads((project / "package.json").read_text())
    package.pop("packageManager")
    (project / "package.json").write_text(_json.dumps(package))
    raw(oss, "src").put_object("yarn-path.tar.gz", pack_tar(str(project)))
    registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=True)
    event = {"source": "oss://src/yarn-path.tar.gz", "target": "oss://site/yarn-path/"}
    event["build"] = {"registry": registry.stdout.strip()}
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, **NO_SIGNATURES, **registry_allowance()})
    try:
        resp = rt.invoke(event, headers=CREDS, timeout=600)
        assert resp.status == 200, resp.body
        pm = resp.json()["packageManager"]
        assert pm["yarnPath"] == ".yarn/releases/yarn-4.5.3.cjs" and pm["version"] == "4.5.3", pm
        out = rt.output()
        assert "[install] $ node .yarn/releases/yarn-4.5.3.cjs install --immutable" in out
        assert "installing package manager" not in out
    finally:
        assert rt.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="builds run as their own users only under root, as on FC")
@pytest.mark.parametrize("manager", list(PROJECTS))
def test_another_sites_build_cannot_change_the_package_manager_the_next_build_runs(oss, manager):
    """Site A's build installs the package manager; a hostile site's build then appends code to every
    file of every package-manager release it can reach, and writes user-level configs; site B's build
    runs the release as installed (verified), with none of that, and its rebuild is warm (pnpm keeps
    a node_modules; yarn's Plug'n'Play installs none: its own per-site cache serves the rebuild)."""
    folder, version, _, _, second_hit = PROJECTS[manager]
    registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=True)
    registry = registry.stdout.strip()
    src = raw(oss, "src")
    src.put_object(f"{manager}.tar.gz", pack_tar(os.path.join(FIXTURES, folder)))
    src.put_object("hostile.tar.gz", pack_tar(os.path.join(FIXTURES, "hostile")))
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, **NO_SIGNATURES, **registry_allowance()})
    try:

        def site_build(prefix):
            event = {
                "source": f"oss://src/{manager}.tar.gz",
                "target": f"oss://site/{manager}-{prefix}",
                "build": {"registry": registry},
            }
            resp = rt.invoke(event, headers=CREDS, timeout=600)
            assert resp.status == 200, resp.body
            return resp.json()

        assert site_build("a/")["tools"]["installed"] == f"{manager}@{version}"
        evidence = shared_dir()
        hostile = {
            "source": "oss://src/hostile.tar.gz",
            "target": f"oss://site/x-{manager}/",
            "build": {"env": {"ATTACK": "poison", "EVIDENCE": evidence}},
        }
        assert rt.invoke(hostile, headers=CREDS).status == 200
        with open(os.path.join(evidence, "report-build.json")) as f:
            poison = json.load(f)["poison"]
        assert poison["corepack"]["refused"] > 0 and poison["corepack"]["changed"] == 0
        b = site_build("b/")
        assert b["tools"] == {"verified": f"{manager}@{version}", "seconds": b["tools"]["seconds"]}
        assert "POISONED" not in rt.output() and "127.0.0.1:9" not in rt.output()
        again = site_build("b/")
        assert again["cache"]["hit"] == second_hit and again["files"]["uploaded"] == 0
    finally:
        assert rt.stop() == 0


def test_signatures_stay_checked_for_the_official_registry_and_a_failure_says_what_to_do(oss):
    """Naming the registry npm uses by default keeps corepack's signature check on. Where that registry
    serves no signatures (this machine's does not), the error says to name it as a mirror."""
    registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=True)
    raw(oss, "src").put_object("pnpm.tar.gz", pack_tar(os.path.join(FIXTURES, "pnpm-site")))
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, **registry_allowance()})
    try:
        event = {
            "source": "oss://src/pnpm.tar.gz",
            "target": "oss://site/sig/",
            "build": {"registry": registry.stdout.strip()},
        }
        resp = rt.invoke(event, headers=CREDS, timeout=600)
        assert "installing package manager pnpm@9.15.9 with corepack\n" in rt.output().replace(
            " (no signature check)", "X"
        )
        if resp.status != 200:
            message = resp.json()["errorMessage"]
            assert "name the mirror in build.registry" in message and "FCBUILD_NPM_REGISTRY" in message
    finally:
        assert rt.stop() == 0
