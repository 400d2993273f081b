"""Building source archives for tests: a project folder packed like a GitHub archive, and hostile ones."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def pack_tar(folder: str, top: str = "project-main", skip: tuple[str, ...] = ("node_modules", "dist")) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in skip)
            for name in sorted(files):
                full = os.path.join(root, name)
                tar.add(full, arcname=f"{top}/{os.path.relpath(full, folder)}")
    return buf.getvalue()


def pack_zip(folder: str, skip: tuple[str, ...] = ("node_modules", "dist")) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in skip)
            for name in sorted(files):
                full = os.path.join(root, name)
                zf.write(full, os.path.relpath(full, folder))
    return buf.getvalue()


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for m in members:
            body = (data or {}).get(m.name)
            if body is not None:
                m.size = len(body)
                tar.addfile(m, io.BytesIO(body))
            else:
                tar.addfile(m)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = size
    info.mode = 0o644
    return info


PKG = b'{"name": "x", "scripts": {"build": "node -e 1"}}'


def hostile_archives(sentinel: str) -> dict[str, tuple[str, bytes]]:
    """name -> (file name, archive bytes). Each writes to `sentinel` if extracted naively."""
    rel_up = "../" * 12 + sentinel.lstrip("/")
    zip_buf = io.BytesIO()
    with zipfile.ZipFile(zip_buf, "w") as zf:
        zf.writestr("package.json", PKG)
        zf.writestr(rel_up, b"pwned")
    zip_link = io.BytesIO()
    with zipfile.ZipFile(zip_link, "w") as zf:
        info = zipfile.ZipInfo("escape")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc")
    return {
        "absolute path": (
            "a.tar.gz",
            _tar([_info("package.json"), _info(sentinel)], {"package.json": PKG, sentinel: b"x"}),
        ),
        "dot-dot": ("a.tar.gz", _tar([_info("package.json"), _info(rel_up)], {"package.json": PKG, rel_up: b"x"})),
        "symlink out": (
            "a.tgz",
            _tar([_info("package.json"), _info("link", tarfile.SYMTYPE, "/etc")], {"package.json": PKG}),
        ),
        "symlink up": (
            "a.tgz",
            _tar([_info("package.json"), _info("d/link", tarfile.SYMTYPE, "../../..")], {"package.json": PKG}),
        ),
        "symlink then write through it": (
            "a.tar.gz",
            _tar(
                [
                    _info("link", tarfile.SYMTYPE, os.path.dirname(sentinel)),
                    _info("link/" + os.path.basename(sentinel)),
                ],
                {"link/" + os.path.basename(sentinel): b"x"},
            ),
        ),
        "hardlink out": (
            "a.tar.gz",
            _tar([_info("package.json"), _info("h", tarfile.LNKTYPE, "/etc/passwd")], {"package.json": PKG}),
        ),
        "fifo": ("a.tar.gz", _tar([_info("package.json"), _info("pipe", tarfile.FIFOTYPE)], {"package.json": PKG})),
        "device": ("a.tar.gz", _tar([_info("package.json"), _info("dev", tarfile.CHRTYPE)], {"package.json": PKG})),
        "zip dot-dot": ("a.zip", zip_buf.getvalue()),
        "zip symlink": ("a.zip", zip_link.getvalue()),
        "not an archive": ("a.tar.gz", b"this is not gzip at all"),
    }


def many_files_tar(count: int) -> bytes:
    members = [_info("package.json")] + [_info(f"f/{i}") for i in range(count)]
    return _tar(members, {"package.json": PKG})


def big_file_zip(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("package.json", PKG)
        zf.writestr("big.bin", b"\0" * size)  # compresses to almost nothing: a small bomb
    return buf.getvalue()
