"""Safe extraction, on archives made here (the end-to-end tests cover the hostile kinds through the server)."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from archive import Limits, extract_archive, safe_member_path
from errors import InvalidSource


def tar_with(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(payload)
                info.mode = 0o4755
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = payload
                tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["/etc/x", "../x", "a/../../x", "C:/x", "a/\0b"])
def test_bad_names(tmp_path, name):
    with pytest.raises(InvalidSource):
        safe_member_path(str(tmp_path), name)


def test_github_style_top_folder_is_stripped_and_links_inside_are_kept(tmp_path):
    data = tar_with(
        [
            ("repo-main/package.json", tarfile.REGTYPE, b"{}"),
            ("repo-main/bin/tool", tarfile.REGTYPE, b"#!/bin/sh"),
            ("repo-main/link-to-pkg", tarfile.SYMTYPE, "package.json"),
            ("repo-main/hard", tarfile.LNKTYPE, "repo-main/package.json"),
        ]
    )
    archive = tmp_path / "a.tgz"
    archive.write_bytes(data)
    project = extract_archive(str(archive), str(tmp_path / "out"))
    assert project == str(tmp_path / "out" / "repo-main")
    for name in ("link-to-pkg", "hard"):
        with open(os.path.join(project, name)) as f:
            assert f.read() == "{}"
    mode = os.stat(os.path.join(project, "bin/tool")).st_mode
    assert mode & 0o7777 == 0o755  # setuid dropped


def test_caps(tmp_path):
    archive = tmp_path / "a.tgz"
    archive.write_bytes(tar_with([(f"f{i}", tarfile.REGTYPE, b"x" * 100) for i in range(10)]))
    with pytest.raises(InvalidSource, match="more than 5 entries"):
        extract_archive(str(archive), str(tmp_path / "o1"), Limits(max_files=5))
    with pytest.raises(InvalidSource, match="bytes when extracted"):
        extract_archive(str(archive), str(tmp_path / "o2"), Limits(max_bytes=500))
