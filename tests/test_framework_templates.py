"""Framework detection over the package.json files that frameworks' own starters write, read from
their published packages (pinned here, fetched with `npm pack` from the registry npm is set up
with, all MIT-licensed; nothing of them is kept in this repository).

Some starters keep package.json as a template with placeholders (`{{ version }}`, `<%= ... %>`) and
conditional blocks: those are read line by line for the names of scripts and dependencies, with
every conditional branch kept, which is all detection looks at."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile

import pytest

from frameworks import detect
from toolchain import PackageManager, build_argv

# (package, file in it, framework, script that runs, output folder)
TEMPLATES = [
    ("create-vite@9.3.0", "template-vue/package.json", "Vite", "build", "dist"),
    ("create-vite@9.3.0", "template-react-ts/package.json", "Vite", "build", "dist"),
    ("create-vite@9.3.0", "template-svelte/package.json", "Vite", "build", "dist"),
    ("create-vue@3.22.3", "template/base/package.json", "Vite", "build", "dist"),
    ("create-docusaurus@3.10.2", "templates/classic/package.json", "Docusaurus", "build", "build"),
    ("create-docusaurus@3.10.2", "templates/classic-typescript/package.json", "Docusaurus", "build", "build"),
    ("hexo-cli@4.3.2", "assets/package.json", "Hexo", "build", "public"),
    ("gatsby-starter-default@1.0.0", "package.json", "Gatsby", "build", "public"),
    ("create-vitepress@0.0.6", "templates/basic/package.json", "VitePress", "build", "docs/.vitepress/dist"),
    ("create-umi@4.6.57", "templates/app/package.json.tpl", "Umi", "build", "dist"),
    ("create-umi@4.6.57", "templates/max/package.json.tpl", "Umi", "build", "dist"),
    ("@tarojs/cli@4.2.1", "templates/default/package.json.tmpl", "Taro (H5)", "build:h5", "dist"),
    ("@schematics/angular@21.2.28", "workspace/files/package.json.template", "Angular", "build", "dist"),
]
# `sv add sveltekit-adapter` with the static adapter swaps the minimal starter's adapter-auto for it.
SVELTEKIT = ("sv@0.17.1", "dist/templates/minimal/package.json")
PLACEHOLDER_BLOCK = re.compile(r"\{\{[#/^][^}]*\}\}|\{\{else\}\}|<%[^=][^%]*%>")


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("templates")
    specs = sorted({spec for spec, *_ in TEMPLATES} | {SVELTEKIT[0]})
    done = subprocess.run(
        ["npm", "pack", "--json", "--pack-destination", str(folder), *specs],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = {f"{entry['name']}@{entry['version']}": entry["filename"] for entry in json.loads(done.stdout)}
    return {spec: os.path.join(folder, names[spec]) for spec in specs}


def read_template(tarball: str, path: str) -> str:
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(f"package/{path}")
        assert member is not None, path
        return member.read().decode()


def template_package(text: str) -> dict:
    """package.json as a template holds it: JSON when it is, else the scripts and dependencies
    named on its lines, every conditional branch kept."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    package: dict[str, dict[str, str]] = {}
    field = ""
    for line in PLACEHOLDER_BLOCK.sub("\n", text).splitlines():
        opened = re.match(r'\s*"(scripts|dependencies|devDependencies)"\s*:\s*\{', line)
        if opened:
            field = opened[1]
            package.setdefault(field, {})
        elif field and re.match(r"\s*\}", line):
            field = ""
        elif field:
            entry = re.match(r'\s*"([^"]+)"\s*:\s*"([^"]*)"', line)
            if entry:
                package[field][entry[1]] = entry[2]
    return package


@pytest.mark.parametrize("spec,path,name,script,output", TEMPLATES, ids=[f"{t[0]}:{t[1]}" for t in TEMPLATES])
def test_the_starters_package_json_is_detected(packed, spec, path, name, script, output):
    package = template_package(read_template(packed[spec], path))
    framework = detect(package)
    assert framework is not None and framework.name == name, (package, framework)
    assert build_argv(PackageManager("npm"), package, framework) == ("npm", "run", script)
    assert framework.output == output


def test_sveltekit_with_the_static_adapter(packed):
    package = template_package(read_template(packed[SVELTEKIT[0]], SVELTEKIT[1]))
    package["devDependencies"]["@sveltejs/adapter-static"] = package["devDependencies"].pop("@sveltejs/adapter-auto")
    framework = detect(package)
    assert framework is not None and framework.name == "SvelteKit (static)"
    assert build_argv(PackageManager("npm"), package, framework) == ("npm", "run", "build")
    assert framework.output == "build"


def test_the_template_reader_keeps_every_branch():
    text = '{\n  "scripts": {\n    "build": "taro build"{{#if x}},\n'
    text += '    "build:h5": "taro build --type h5"{{/if}}\n  },\n'
    text += '  "dependencies": {\n    "@tarojs/taro": "{{ version }}"<% if (a) { %>,\n    "vue": "^3"<% } %>\n  }\n}\n'
    assert template_package(text) == {
        "scripts": {"build": "taro build", "build:h5": "taro build --type h5"},
        "dependencies": {"@tarojs/taro": "{{ version }}", "vue": "^3"},
    }
