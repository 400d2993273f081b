"""sandbox's tree helpers on trees a build can make: deeper than Python's recursion limit, with
links that must not be followed."""

from __future__ import annotations

import os

import sandbox


def _deep(root, levels):
    """`levels` nested folders under `root`, made from inside (the whole path is longer than PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("bottom", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    os.close(fd)


def test_a_tree_5000_deep_is_removed_whole(tmp_path):
    top = tmp_path / "deep"
    top.mkdir()
    _deep(str(top), 5000)
    assert sandbox.remove_tree(str(top)) is True
    assert not top.exists()


def test_removal_never_follows_a_link(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("x")
    top = tmp_path / "tree"
    (top / "a").mkdir(parents=True)
    (top / "a" / "to-keep").symlink_to(keep)
    (top / "file-link").symlink_to(keep / "precious")
    assert sandbox.remove_tree(str(top)) and not top.exists()
    assert (keep / "precious").read_text() == "x"
    link = tmp_path / "just-a-link"
    link.symlink_to(keep)
    assert sandbox.remove_tree(str(link)) and not link.exists() and keep.exists()
    assert sandbox.remove_tree(str(tmp_path / "never-there"))


def test_walk_goes_deeper_than_os_walk_and_can_be_pruned(tmp_path):
    _deep(str(tmp_path), 1500)
    depth = sum(1 for _ in sandbox.walk(str(tmp_path)))
    assert depth == 1501
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "inner").mkdir()
    seen = []
    for folder, dirs, _files in sandbox.walk(str(tmp_path)):
        seen.append(os.path.relpath(folder, tmp_path))
        dirs[:] = [d for d in dirs if d != "d"]
    assert seen == [".", "skip", os.path.join("skip", "inner")]
    assert sandbox.remove_tree(str(tmp_path / "d"))  # pytest's own clean-up of old runs recurses
