"""Framework detection over package.json files shaped like each framework's starter template, and
output detection: the framework's folder first, `public` only when the build wrote it."""

from __future__ import annotations

import os
import time

import pytest

from errors import InvalidSource
from frameworks import FRAMEWORKS, detect
from toolchain import PackageManager, build_argv, find_output_dir

NPM = PackageManager("npm", lockfile="package-lock.json")

# name -> (package.json, expected script, expected output)
TEMPLATES = {
    "uni-app (H5)": (
        {
            "scripts": {"dev:h5": "uni", "build:h5": "uni build", "build:mp-weixin": "uni build -p mp-weixin"},
            "dependencies": {"@dcloudio/uni-app": "3.0.0-alpha", "vue": "^3.4.21"},
            "devDependencies": {"@dcloudio/vite-plugin-uni": "3.0.0-alpha", "vite": "5.2.8"},
        },
        "build:h5",
        "dist/build/h5",
    ),
    "Taro (H5)": (
        {
            "scripts": {"build:weapp": "taro build --type weapp", "build:h5": "taro build --type h5"},
            "dependencies": {"@tarojs/taro": "4.0.0", "@tarojs/components": "4.0.0", "react": "^18.0.0"},
            "devDependencies": {"@tarojs/cli": "4.0.0", "webpack": "5.91.0"},
        },
        "build:h5",
        "dist",
    ),
    "VitePress": (
        {
            "scripts": {"docs:dev": "vitepress dev docs", "docs:build": "vitepress build docs"},
            "devDependencies": {"vitepress": "^1.5.0"},
        },
        "docs:build",
        "docs/.vitepress/dist",
    ),
    "VuePress": (
        {
            "scripts": {"docs:dev": "vuepress dev docs", "docs:build": "vuepress build docs"},
            "devDependencies": {"vuepress": "2.0.0-rc.18", "@vuepress/bundler-vite": "2.0.0-rc.18"},
        },
        "docs:build",
        "docs/.vuepress/dist",
    ),
    "Docusaurus": (
        {
            "scripts": {"start": "docusaurus start", "build": "docusaurus build"},
            "dependencies": {"@docusaurus/core": "3.6.0", "@docusaurus/preset-classic": "3.6.0", "react": "^18.0.0"},
        },
        "build",
        "build",
    ),
    "Gatsby": (
        {"scripts": {"develop": "gatsby develop", "build": "gatsby build"}, "dependencies": {"gatsby": "^5.13.0"}},
        "build",
        "public",
    ),
    "Hexo": (
        {
            "scripts": {"build": "hexo generate", "server": "hexo server"},
            "dependencies": {"hexo": "^7.3.0", "hexo-generator-index": "^4.0.0", "hexo-renderer-marked": "^6.3.0"},
        },
        "build",
        "public",
    ),
    "Eleventy": ({"scripts": {"build": "eleventy"}, "devDependencies": {"@11ty/eleventy": "^3.0.0"}}, "build", "_site"),
    "Astro": (
        {"scripts": {"dev": "astro dev", "build": "astro build"}, "dependencies": {"astro": "^4.16.0"}},
        "build",
        "dist",
    ),
    "Next.js (static export)": (
        {
            "scripts": {"dev": "next dev", "build": "next build"},
            "dependencies": {"next": "15.0.3", "react": "19.0.0-rc"},
        },
        "build",
        "out",
    ),
    "Nuxt (generate)": (
        {"scripts": {"build": "nuxt build", "generate": "nuxt generate"}, "dependencies": {"nuxt": "^3.14.0"}},
        "generate",
        ".output/public",
    ),
    "SvelteKit (static)": (
        {
            "scripts": {"build": "vite build"},
            "devDependencies": {"@sveltejs/kit": "^2.0.0", "@sveltejs/adapter-static": "^3.0.0", "vite": "^5.0.3"},
        },
        "build",
        "build",
    ),
    "Umi": ({"scripts": {"build": "umi build"}, "dependencies": {"umi": "^4.3.0"}}, "build", "dist"),
    "Angular": (
        {
            "scripts": {"ng": "ng", "build": "ng build"},
            "dependencies": {"@angular/core": "^18.2.0"},
            "devDependencies": {"@angular/cli": "^18.2.0"},
        },
        "build",
        "dist",
    ),
    "Create React App": (
        {
            "scripts": {"start": "react-scripts start", "build": "react-scripts build"},
            "dependencies": {"react": "^18.3.1", "react-scripts": "5.0.1"},
        },
        "build",
        "build",
    ),
    "Vue CLI": (
        {
            "scripts": {"dev": "vue-cli-service serve", "build:prod": "vue-cli-service build"},
            "devDependencies": {"@vue/cli-service": "~4.5.0"},
        },
        "build:prod",
        "dist",
    ),
    "Vite": (
        {"scripts": {"dev": "vite", "build": "tsc -b && vite build"}, "devDependencies": {"vite": "^6.0.1"}},
        "build",
        "dist",
    ),
}


def test_every_framework_of_the_table_has_a_template_here():
    assert {f.name for f in FRAMEWORKS} == set(TEMPLATES)


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_detection_script_and_output(name):
    package, script, output = TEMPLATES[name]
    framework = detect(package)
    assert framework is not None and framework.name == name
    assert build_argv(NPM, package, framework) == ("npm", "run", script)
    assert framework.output == output


def test_no_build_script_names_what_was_looked_for():
    package = {"scripts": {"dev": "vitepress dev docs"}, "devDependencies": {"vitepress": "1"}}
    with pytest.raises(InvalidSource, match="looked for docs:build, build, as VitePress names them"):
        build_argv(NPM, package, detect(package))
    assert detect({"dependencies": {"left-pad": "1"}}) is None


def test_output_the_framework_folder_first_and_public_only_when_written(tmp_path):
    hexo = detect(TEMPLATES["Hexo"][0])
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("generated")
    assert find_output_dir(str(tmp_path), None, hexo) == str(tmp_path / "public")
    vite = detect(TEMPLATES["Vite"][0])
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "index.html").write_text("built")
    assert find_output_dir(str(tmp_path), None, vite) == str(tmp_path / "dist")
    plain = tmp_path / "plain"
    (plain / "public").mkdir(parents=True)
    (plain / "public" / "favicon.ico").write_text("a source folder")
    with pytest.raises(Exception, match="the folders there: public"):
        find_output_dir(str(plain), None, None, public_written=False)
    time.sleep(0.01)
    assert find_output_dir(str(plain), None, None, public_written=True) == str(plain / "public")
    assert os.path.isdir(plain / "public")


VITE_INDEX = """<!doctype html><html><head>
<script type="module" crossorigin src="./assets/index-BEbWJ3Xv.js"></script>
<link rel="stylesheet" crossorigin href="./assets/index-DQ3P1g1z.css">
<link rel="icon" href="favicon.svg"></head><body><div id="app"></div></body></html>"""


@pytest.mark.parametrize(
    "page,deps,warned",
    [
        (VITE_INDEX, {"vite": "6", "vue-router": "4"}, "./assets/index-BEbWJ3Xv.js"),
        (VITE_INDEX.replace('"./assets', '"assets'), {"vite": "6", "react-router-dom": "7"}, "assets/index-"),
        (VITE_INDEX, {"vite": "6"}, ""),  # no router: no deep links to break
        (VITE_INDEX, {"vite": "6", "svelte-spa-router": "4"}, ""),  # hash routes never reach the server
        (VITE_INDEX.replace('"./assets', '"/assets'), {"vite": "6", "vue-router": "4"}, ""),  # from the root
        (VITE_INDEX.replace('"./assets', '"https://cdn.example.com/assets'), {"vite": "6", "vue-router": "4"}, ""),
        (VITE_INDEX, {"vitepress": "1", "vue-router": "4"}, ""),  # not a single-page app
    ],
)
def test_a_single_page_app_with_history_routes_and_relative_assets_is_warned(tmp_path, page, deps, warned):
    from build_pipeline import deep_link_warnings

    (tmp_path / "index.html").write_text(page)
    package = {"dependencies": {k: v for k, v in deps.items() if "router" in k}, "devDependencies": deps}
    found = deep_link_warnings(str(tmp_path), detect(package), package)
    if not warned:
        assert found == []
        return
    assert len(found) == 1 and warned in found[0], found
    assert "/some/assets/index-BEbWJ3Xv.js" in found[0] and 'base in vite.config to "/"' in found[0], found
