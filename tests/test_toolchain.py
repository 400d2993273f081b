"""Pure decisions: package manager, Node version ranges, commands, output folder, child environment."""

from __future__ import annotations

import pytest

from errors import BuildFailed, InvalidSource, NotAvailable
from toolchain import (
    BuildPaths,
    NodeInstall,
    PackageManager,
    build_argv,
    child_env,
    choose_node,
    detect_package_manager,
    find_output_dir,
    node_requirement,
    plan_npm,
    satisfies,
)


@pytest.mark.parametrize(
    "files,package,head,expected",
    [
        (["package-lock.json"], {}, "", ("npm", "", "package-lock.json", False, ("npm", "ci"))),
        ([], {}, "", ("npm", "", "", False, ("npm", "install"))),
        (
            ["pnpm-lock.yaml"],
            {},
            "",
            ("pnpm", "", "pnpm-lock.yaml", False, ("corepack", "pnpm", "install", "--frozen-lockfile")),
        ),
        (
            ["yarn.lock"],
            {},
            "# yarn lockfile v1",
            ("yarn", "", "yarn.lock", False, ("corepack", "yarn", "install", "--frozen-lockfile")),
        ),
        (
            ["yarn.lock"],
            {},
            "__metadata:\n  version: 8",
            ("yarn", "", "yarn.lock", True, ("corepack", "yarn", "install", "--immutable")),
        ),
        (
            ["pnpm-lock.yaml"],
            {"packageManager": "pnpm@9.12.1+sha512." + "ab" * 64},
            "",
            ("pnpm", "9.12.1", "pnpm-lock.yaml", False, ("corepack", "pnpm@9.12.1", "install", "--frozen-lockfile")),
        ),
        (
            ["yarn.lock"],
            {"packageManager": "yarn@4.5.0"},
            "",
            ("yarn", "4.5.0", "yarn.lock", True, ("corepack", "yarn@4.5.0", "install", "--immutable")),
        ),
        (
            ["package-lock.json"],
            {"packageManager": "npm@10.2.0"},
            "",
            ("npm", "10.2.0", "package-lock.json", False, ("corepack", "npm@10.2.0", "ci")),
        ),
    ],
)
def test_package_manager(files, package, head, expected):
    pm = detect_package_manager(files, package, head)
    assert (pm.name, pm.version, pm.lockfile, pm.berry, pm.install_argv()) == expected


def test_bad_pin_is_refused():
    with pytest.raises(InvalidSource, match="packageManager"):
        detect_package_manager([], {"packageManager": "bun@1.0.0"})


def test_build_script_required():
    pm = detect_package_manager(["package-lock.json"], {})
    assert build_argv(pm, {"scripts": {"build": "vite build"}}) == ("npm", "run", "build")
    with pytest.raises(InvalidSource, match="no build script; give build.command"):
        build_argv(pm, {"scripts": {}})


@pytest.mark.parametrize(
    "version,spec,ok",
    [
        ((20, 10, 0), "20", True),
        ((18, 19, 0), "20", False),
        ((20, 10, 0), "^18.17 || ^20.3", True),
        ((20, 1, 0), "^20.3", False),
        ((20, 19, 1), ">=18 <21", True),
        ((22, 1, 0), ">=18 <21", False),
        ((18, 20, 0), "~18.19", False),
        ((18, 19, 5), "~18.19", True),
        ((20, 10, 0), "18.x", False),
        ((18, 2, 3), "18.x", True),
        ((16, 0, 0), "16 - 18", True),
        ((19, 0, 0), "16 - 18", False),
        ((20, 10, 0), "lts/*", True),
        ((20, 10, 0), "v20.10.0", True),
        ((20, 10, 1), "20.10.0", False),
        ((20, 10, 0), ">= 18.0.0", True),
        ((0, 3, 5), "^0.3.1", True),
        ((0, 4, 0), "^0.3.1", False),
    ],
)
def test_satisfies(version, spec, ok):
    assert satisfies(version, spec) is ok


def test_node_requirement_precedence():
    assert node_requirement({".nvmrc": "18\n"}, {"engines": {"node": ">=20"}}, "20") == ("20", "request")
    assert node_requirement({".nvmrc": "18\n"}, {"engines": {"node": ">=20"}}, None) == ("18", ".nvmrc")
    assert node_requirement({".node-version": "v20.1"}, {}, None) == ("v20.1", ".node-version")
    assert node_requirement({}, {"engines": {"node": ">=20"}}, None) == (">=20", "package.json engines.node")
    assert node_requirement({}, {}, None) == ("", "")


def test_choose_node():
    installs = [
        NodeInstall((18, 19, 0), "/var/fc/lang/nodejs18/bin"),
        NodeInstall((20, 10, 0), "/var/fc/lang/nodejs20/bin"),
        NodeInstall((20, 20, 2), "/usr/bin", on_path=True),
    ]
    assert choose_node(installs, "18", "request").bin_dir == "/var/fc/lang/nodejs18/bin"
    assert choose_node(installs, "20", "request").version == (20, 20, 2)
    assert choose_node(installs, "", "").bin_dir == "/usr/bin"
    with pytest.raises(NotAvailable, match="v18.19.0, v20.10.0, v20.20.2"):
        choose_node(installs, "22", ".nvmrc")


def test_output_dir(tmp_path):
    (tmp_path / "dist").mkdir()
    with pytest.raises(BuildFailed, match="no output"):
        find_output_dir(str(tmp_path), None)
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "index.html").write_text("x")
    assert find_output_dir(str(tmp_path), None) == str(tmp_path / "build")
    nested = tmp_path / "dist" / "app" / "browser"
    nested.mkdir(parents=True)
    (nested / "index.html").write_text("x")
    assert find_output_dir(str(tmp_path), None) == str(nested)
    assert find_output_dir(str(tmp_path), "build") == str(tmp_path / "build")


def test_angular_17s_browser_folder_is_found_beside_its_files(tmp_path):
    """dist/<project>/ holds browser/index.html, 3rdpartylicenses.txt and prerendered-routes.json (and
    server/ with SSR, which has no index.html): the site is browser/."""
    from frameworks import FRAMEWORKS

    angular = next(f for f in FRAMEWORKS if f.name == "Angular")
    app = tmp_path / "dist" / "shop"
    (app / "browser").mkdir(parents=True)
    (app / "server").mkdir()
    (app / "browser" / "index.html").write_text("<app-root></app-root>")
    (app / "server" / "server.mjs").write_text("")
    (app / "3rdpartylicenses.txt").write_text("MIT")
    (app / "prerendered-routes.json").write_text("{}")
    assert find_output_dir(str(tmp_path), None, angular) == str(app / "browser")


def test_vitepress_at_the_project_root_and_under_docs(tmp_path):
    from frameworks import FRAMEWORKS

    vitepress = next(f for f in FRAMEWORKS if f.name == "VitePress")
    root_site = tmp_path / ".vitepress" / "dist"
    root_site.mkdir(parents=True)
    (root_site / "index.html").write_text("x")
    assert find_output_dir(str(tmp_path), None, vitepress) == str(root_site)
    docs_site = tmp_path / "docs" / ".vitepress" / "dist"
    docs_site.mkdir(parents=True)
    (docs_site / "index.html").write_text("x")
    assert find_output_dir(str(tmp_path), None, vitepress) == str(docs_site)  # the table's first


def test_the_no_output_error_names_dot_folders_too(tmp_path):
    (tmp_path / ".vitepress" / "cache").mkdir(parents=True)
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "src").mkdir()
    with pytest.raises(BuildFailed, match=r"the folders there: \.vitepress/, src/\)"):
        find_output_dir(str(tmp_path), None)


PATHS = BuildPaths("/ws/site", "/ws/site/home", "/ws/site/tmp", "/ws/site/caches", "/root/tools/corepack")


def test_child_env_is_an_allowlist():
    launch = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "TMPDIR": "/var/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HTTPS_PROXY": "http://proxy:3128",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "t",
        "FC_FUNCTION_NAME": "f",
        "FCBUILD_OSS_ENDPOINT": "http://x",
        "AWS_SECRET_ACCESS_KEY": "a",
        "LD_LIBRARY_PATH": "/opt/lib",
    }
    env = child_env(
        launch, "/node/bin", PATHS, registry="https://mirror/", extra={"A": "1"}, user="fcbuild20000", signatures=False
    )
    assert env["PATH"] == "/node/bin:/usr/bin:/bin"
    assert env["CI"] == "true" and env["A"] == "1"
    assert env["LD_LIBRARY_PATH"] == "/opt/lib"
    assert env["npm_config_registry"] == env["pnpm_config_registry"] == "https://mirror/"
    assert env["COREPACK_NPM_REGISTRY"] == "https://mirror"
    assert env["COREPACK_INTEGRITY_KEYS"] == "0"
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and env["LC_ALL"] == "C.UTF-8"
    assert not any(k.startswith(("ALIBABA_CLOUD", "FC_", "FCBUILD_", "AWS_")) for k in env)
    assert "npm_config_store_dir" not in env
    assert env["USER"] == env["LOGNAME"] == "fcbuild20000"


def test_the_signature_check_can_be_turned_off_without_naming_a_registry():
    assert child_env({}, "/n", PATHS, signatures=False)["COREPACK_INTEGRITY_KEYS"] == "0"
    assert "COREPACK_INTEGRITY_KEYS" not in child_env({}, "/n", PATHS)
    assert child_env({}, "/n", PATHS)["SHELL"] == "/bin/sh"


@pytest.mark.parametrize("bun", ["bun.lock", "bun.lockb"])
def test_a_bun_lockfile_is_named_not_ignored(bun):
    pm = detect_package_manager([bun], {}, "", "")
    assert (pm.name, pm.lockfile) == ("npm", "")
    assert pm.describe()["note"] == f"bun is not supported ({bun} found): installing with npm without a lockfile"
    assert "note" not in detect_package_manager([bun, "package-lock.json"], {}, "", "").describe()


def test_child_env_has_a_home_and_caches_of_its_own():
    env = child_env({"HOME": "/root", "TMPDIR": "/tmp"}, "/n", PATHS, package_manager="pnpm")
    assert env["HOME"] == "/ws/site/home" and env["TMPDIR"] == "/ws/site/tmp"
    assert all(env[k].startswith("/ws/site/home/") for k in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"))
    assert env["npm_config_cache"] == "/ws/site/caches/npm"
    assert env["npm_config_store_dir"] == env["pnpm_config_store_dir"] == "/ws/site/caches/pnpm-store"
    assert env["npm_config_cache_dir"] == env["pnpm_config_cache_dir"] == "/ws/site/caches/pnpm-cache"
    assert env["COREPACK_HOME"] == "/root/tools/corepack"
    assert env["GIT_CEILING_DIRECTORIES"] == "/ws/site"
    yarn = child_env({}, "/n", PATHS, package_manager="yarn")
    assert yarn["YARN_CACHE_FOLDER"] == "/ws/site/caches/yarn"
    assert yarn["YARN_GLOBAL_FOLDER"] == "/ws/site/caches/yarn-global"


@pytest.mark.parametrize(
    "files,package,yarn_head,pnpm_head,release",
    [
        (["pnpm-lock.yaml"], {}, "", "lockfileVersion: '9.0'\n", "pnpm@9"),
        (["pnpm-lock.yaml"], {}, "", "lockfileVersion: '6.0'\n", "pnpm@8"),
        (["pnpm-lock.yaml"], {}, "", "lockfileVersion: 5.4\n", "pnpm@7"),
        (["yarn.lock"], {}, "# yarn lockfile v1\n", "", "yarn@1"),
        (["yarn.lock"], {}, "__metadata:\n  version: 6\n  cacheKey: 8\n", "", "yarn@3"),
        (["yarn.lock"], {}, "__metadata:\n  version: 8\n  cacheKey: 10\n", "", "yarn@4"),
        (["pnpm-lock.yaml"], {"packageManager": "pnpm@10.1.0"}, "", "lockfileVersion: '9.0'\n", "pnpm@10.1.0"),
    ],
)
def test_unpinned_package_managers_get_the_major_of_their_lockfile(files, package, yarn_head, pnpm_head, release):
    assert detect_package_manager(files, package, yarn_head, pnpm_head).release == release


def test_frozen_binary_environment_is_restored():
    from settings import launch_environment

    frozen = {"LD_LIBRARY_PATH": "/tmp/_MEI123:/opt/lib", "LD_LIBRARY_PATH_ORIG": "/opt/lib", "PATH": "/bin"}
    assert launch_environment(frozen, frozen=True)["LD_LIBRARY_PATH"] == "/opt/lib"
    assert "LD_LIBRARY_PATH" not in launch_environment({"LD_LIBRARY_PATH": "/tmp/_MEI123"}, frozen=True)
    assert launch_environment({"LD_LIBRARY_PATH": "/x"}, frozen=False)["LD_LIBRARY_PATH"] == "/x"


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("lts/iron", "20"),
        ("lts/*", "lts/*"),
        ("LTS/Hydrogen", "18"),
        (">=18 <21", ">=18 <21"),
        ("18 || 20", "18 || 20"),
    ],
)
def test_node_version_forms(spec, expected):
    from build_request import _node_version

    assert _node_version(spec) == expected


def test_lts_means_an_even_major():
    assert satisfies((20, 1, 0), "lts/*") and not satisfies((21, 0, 0), "lts/*")


@pytest.mark.parametrize(
    "lock,node,bundled,version,release",
    [
        ('{"lockfileVersion": 3}', (20, 11, 0), "10.2.4", "10.2.4", ""),  # Node's own npm reads it
        ('{"lockfileVersion": 1}', (14, 21, 3), "6.14.18", "6.14.18", ""),
        ('{"lockfileVersion": 2}', (14, 21, 3), "6.14.18", "6.14.18", ""),  # v2 keeps v1's section
        ('{"lockfileVersion": 3}', (14, 21, 3), "6.14.18", "", "npm@9"),  # npm 6 cannot: corepack's npm 9
        ('{"lockfileVersion": 3}', (18, 20, 0), "", "", "npm@10"),  # no bundled npm found
        ('{"lockfileVersion": 4}', (20, 11, 0), "10.2.4", "10.2.4", ""),
    ],
)
def test_npm_that_reads_the_lockfile(lock, node, bundled, version, release):
    pm = plan_npm(PackageManager("npm", lockfile="package-lock.json"), lock, node, bundled)
    assert (pm.version, pm.release, pm.via_corepack) == (version, release, bool(release))
    if release:
        assert pm.resolved("9.9.4").argv("ci") == ("corepack", "npm@9.9.4", "ci")


def test_npm_without_a_lockfile_is_the_one_node_brings():
    pm = plan_npm(PackageManager("npm"), "", (20, 11, 0), "10.2.4")
    assert (pm.version, pm.via_corepack, pm.install_argv()) == ("10.2.4", False, ("npm", "install"))


def test_a_lockfile_no_npm_for_that_node_can_read_is_a_clear_error():
    with pytest.raises(InvalidSource, match=r"lockfileVersion 3 needs npm 7 or newer.*build.node_version"):
        plan_npm(PackageManager("npm", lockfile="package-lock.json"), '{"lockfileVersion": 3}', (8, 17, 0), "5.6.0")


def test_a_committed_yarn_release_is_used_only_inside_the_project(tmp_path):
    from toolchain import committed_yarn

    berry = PackageManager("yarn", "", "yarn.lock", True, "yarn@4")
    (tmp_path / ".yarn" / "releases").mkdir(parents=True)
    (tmp_path / ".yarn" / "releases" / "yarn-4.5.3.cjs").write_text("// yarn")
    found = committed_yarn(berry, 'yarnPath: ".yarn/releases/yarn-4.5.3.cjs"  # set by yarn\n', str(tmp_path))
    assert found.argv("install") == ("node", ".yarn/releases/yarn-4.5.3.cjs", "install")
    assert (found.version, found.via_corepack) == ("4.5.3", False)
    (tmp_path.parent / "outside.cjs").write_text("// not the project's")
    assert committed_yarn(berry, "yarnPath: ../outside.cjs\n", str(tmp_path)) == berry
    assert committed_yarn(berry, "yarnPath: .yarn/releases/missing.cjs\n", str(tmp_path)) == berry
    classic = PackageManager("yarn", "", "yarn.lock", False, "yarn@1")
    assert committed_yarn(classic, "yarnPath: .yarn/releases/yarn-4.5.3.cjs\n", str(tmp_path)) == classic
