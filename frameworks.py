"""What the frameworks people build sites with need: the build to run and the folder it writes.

A table of data, not code paths: each entry is matched by the dependencies in package.json (first
match wins, the more specific frameworks first), and says which script builds the site (the first of
`scripts` that package.json has), where the output lands, whether the output is a single-page app,
and which setting makes it work under a path prefix. A request's `build.command` and
`build.output_dir` override what the table says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Framework:
    name: str
    packages: tuple[str, ...]  # any of these in the dependencies identifies it
    scripts: tuple[str, ...]  # the build scripts to look for, in order
    output: str  # relative to the package
    spa: bool  # a single-page app: missing paths should get index.html (ErrorDocument 200)
    prefix_setting: str  # what to set to serve the site under a path prefix
    other_outputs: tuple[str, ...] = ()  # where else the framework writes, in order (another layout)
    base_arg: str = ""  # the build script's option that sets the prefix (the path is appended)
    base_env: str = ""  # or the variable the framework reads it from


FRAMEWORKS: tuple[Framework, ...] = (
    Framework(
        "uni-app (H5)",
        ("@dcloudio/uni-app",),
        ("build:h5", "build"),
        "dist/build/h5",
        True,
        "manifest.json h5.router.base",
    ),
    Framework(
        "Taro (H5)", ("@tarojs/taro", "@tarojs/cli"), ("build:h5", "build"), "dist", True, "config h5.publicPath"
    ),
    Framework(
        "VitePress",
        ("vitepress",),
        ("docs:build", "build"),
        "docs/.vitepress/dist",
        False,
        "base in .vitepress/config",
        (".vitepress/dist",),  # the site at the project root (`vitepress build`)
        base_arg="--base=",
    ),
    Framework(
        "VuePress",
        ("vuepress", "@vuepress/cli"),
        ("docs:build", "build"),
        "docs/.vuepress/dist",
        False,
        "base in .vuepress/config",
        (".vuepress/dist",),
    ),
    Framework("Docusaurus", ("@docusaurus/core",), ("build",), "build", False, "baseUrl in docusaurus.config"),
    Framework("Gatsby", ("gatsby",), ("build",), "public", False, "pathPrefix, and gatsby build --prefix-paths"),
    Framework("Hexo", ("hexo",), ("build",), "public", False, "root in _config.yml"),
    Framework("Eleventy", ("@11ty/eleventy",), ("build",), "_site", False, "pathPrefix"),
    Framework("Astro", ("astro",), ("build",), "dist", False, "base in astro.config"),
    Framework("Next.js (static export)", ("next",), ("build",), "out", False, "basePath (with output: 'export')"),
    Framework("Nuxt (generate)", ("nuxt", "nuxt3"), ("generate", "build"), ".output/public", False, "app.baseURL"),
    Framework("SvelteKit (static)", ("@sveltejs/adapter-static",), ("build",), "build", False, "kit.paths.base"),
    Framework("Umi", ("umi", "@umijs/max"), ("build",), "dist", True, "base and publicPath"),
    # Angular 17 and later: dist/<project>/browser/index.html, beside 3rdpartylicenses.txt (see toolchain).
    Framework("Angular", ("@angular/core",), ("build",), "dist", True, "--base-href", base_arg="--base-href="),
    Framework(
        "Create React App",
        ("react-scripts",),
        ("build",),
        "build",
        True,
        "PUBLIC_URL or homepage",
        base_env="PUBLIC_URL",
    ),
    Framework("Vue CLI", ("@vue/cli-service",), ("build", "build:prod"), "dist", True, "publicPath in vue.config.js"),
    Framework("Vite", ("vite",), ("build",), "dist", True, "base in vite.config", base_arg="--base="),
)


def detect(package: Mapping[str, object]) -> Framework | None:
    """The first framework whose packages package.json depends on."""
    deps = _dependencies(package, ("dependencies", "devDependencies", "peerDependencies"))
    return next((f for f in FRAMEWORKS if deps.intersection(f.packages)), None)


def _dependencies(package: Mapping[str, object], fields: tuple[str, ...]) -> set[str]:
    """The package names under package.json's `fields`."""
    deps: set[str] = set()
    for name in fields:
        value = package.get(name)
        if isinstance(value, dict):
            deps.update(value)
    return deps


# Routers whose default routes are real paths (the History API): a deep link is a request for that
# path, answered with index.html by the SPA fallback, and the page's relative asset URLs then resolve
# below it. Hash routers (svelte-spa-router, createWebHashHistory) never ask the server for a path.
HISTORY_ROUTERS = (
    "vue-router",
    "react-router",
    "react-router-dom",
    "@tanstack/react-router",
    "@angular/router",
    "@solidjs/router",
    "preact-router",
    "wouter",
    "@reach/router",
)


def history_router(package: Mapping[str, object]) -> str:
    """The History-API router package.json depends on, or ""."""
    deps = _dependencies(package, ("dependencies", "devDependencies"))
    return next((r for r in HISTORY_ROUTERS if r in deps), "")


def base_path_setting(framework: Framework | None, base: str, via_npm: bool) -> tuple[tuple[str, ...], dict[str, str]]:
    """What serves a build under the URL path `base`: arguments for the build script (after `--` for
    npm, which would take them as its own) and variables. Every build gets BASE_PATH, for a
    config that reads it (`base: process.env.BASE_PATH`)."""
    env = {"BASE_PATH": base}
    if base == "/" or framework is None:
        return (), env
    if framework.base_env:
        env[framework.base_env] = base.rstrip("/") or "/"
    if framework.base_arg:
        return ((*(("--",) if via_npm else ()), framework.base_arg + base)), env
    return (), env


def build_script(framework: Framework | None, package: Mapping[str, object]) -> str:
    """The script that builds the site: the framework's first that package.json has, else `build`,
    else ""."""
    scripts = package.get("scripts")
    scripts = scripts if isinstance(scripts, dict) else {}
    for name in (*(framework.scripts if framework else ()), "build"):
        if name in scripts:
            return name
    return ""
