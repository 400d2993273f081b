#!/usr/bin/env bash
# Builds dist/bootstrap: fcbuild frozen by PyInstaller into one file, then made fully static by
# staticx, so it runs on FC's custom.debian10 (glibc 2.28) with no Python and no library of the host.
#
#   ./build.sh              build with the distribution's Python (the proven path; CI runs it)
#   ./build.sh --container  build inside a manylinux2014 image (glibc 2.17 floor) where a container
#                           engine exists; not exercised by CI: our machines have no engine
#
# Environment: PYTHON (default /usr/bin/python3.11, the distribution's interpreter: a pyenv build
# carries DT_RUNPATH, which staticx refuses), BUILD_VENV (default .venv-build).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-/usr/bin/python3.11}
BUILD_VENV=${BUILD_VENV:-.venv-build}
DIST=dist
WORK=build/pyinstaller

die() { echo "build.sh: $*" >&2; exit 1; }

if [ "${1:-}" = "--container" ]; then
    engine=$(command -v docker || command -v podman || true)
    [ -n "$engine" ] || die "--container needs docker or podman; none is installed (use ./build.sh without it)"
    "$engine" info >/dev/null 2>&1 || die "--container: $engine is installed but no engine answers"
    exec "$engine" run --rm -v "$PWD:/src" -w /src quay.io/pypa/manylinux2014_x86_64 \
        bash -c 'PYTHON=/opt/python/cp311-cp311/bin/python3.11 BUILD_VENV=/tmp/venv-build ./build.sh'
fi

# What the build needs from the host, said clearly when missing.
[ -x "$PYTHON" ] || die "no $PYTHON: install the distribution's Python 3.11 (apt-get install python3.11 python3.11-venv python3.11-dev)"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "$PYTHON has no venv/ensurepip: apt-get install python3.11-venv"
include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$include/Python.h" ] || die "no Python.h under $include: apt-get install python3.11-dev (crcmod's C extension is compiled)"
command -v gcc >/dev/null || die "no gcc: apt-get install gcc (crcmod's C extension is compiled)"
command -v objdump >/dev/null || die "no objdump: apt-get install binutils (staticx reads the binary with it)"

stamp="$BUILD_VENV/.installed-$(cat requirements.txt requirements-build.txt | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
    rm -rf "$BUILD_VENV"
    "$PYTHON" -m venv "$BUILD_VENV"
    # --no-cache-dir: a crcmod wheel cached from another interpreter can carry that interpreter's RUNPATH.
    "$BUILD_VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
        -r requirements.txt -r requirements-build.txt
    touch "$stamp"
fi
"$BUILD_VENV/bin/python" -c 'import crcmod._crcfunext' \
    || die "crcmod was installed without its C extension (CRC64 would be ~35x slower): check gcc and Python.h, then rm -rf $BUILD_VENV"

# What oss2 and the CDN SDK drag in that fcbuild never imports (oss_io keeps oss2 from loading its
# client-side encryption, cdn_io keeps aliyunsdkcore from loading its RSA signer), and stdlib parts
# a server does not use: every byte bundled is unpacked again at every start. requests runs without
# a character detector (it decodes nothing of OSS's; oss_io silences its warning about it); uuid
# without its C helper (uuid4 reads os.urandom); getpass (and with it termios) only serves
# urllib's interactive FTP password prompt. `python bench/startup_imports.py` lists what is left.
excludes=(
    oss2.crypto oss2.crypto_bucket Crypto aliyunsdkkms cryptography cffi pycparser
    aliyunsdkcore.auth.algorithm.sha_hmac256 aliyunsdkcore.vendored.requests.packages.urllib3.contrib.pyopenssl
    brotli brotlicffi zstandard socks simplejson chardet charset_normalizer _uuid getpass termios
    _codecs_cn _codecs_hk _codecs_iso2022 _codecs_jp _codecs_kr _codecs_tw _multibytecodec
    decimal _decimal _pydecimal bz2 _bz2 lzma _lzma
    tkinter unittest pydoc doctest pdb lib2to3 idlelib xmlrpc sqlite3 curses multiprocessing
    setuptools pkg_resources distutils pip
)
exclude_args=()
for module in "${excludes[@]}"; do exclude_args+=(--exclude-module "$module"); done

# glibc loads libgcc_s at run time (no binary links it, so PyInstaller does not see it) when a thread
# ends with pthread_exit, as Python's daemon threads do at exit; without it the process aborts.
libgcc_s=$(readlink -f "$(gcc -print-file-name=libgcc_s.so.1)")
[ -f "$libgcc_s" ] || die "no libgcc_s.so.1 found through gcc: apt-get install libgcc-s1"

rm -rf "$WORK" "$DIST/fcbuild-onefile" "$DIST/bootstrap"
# Level 0: the archive and the modules in it are stored, not deflated. The bootloader unpacks the
# whole archive at every start and each import reads its module from it; inflating was ~100 ms of a
# ~260 ms start and ~20 ms of the first build's imports. The binary doubles (~27 MB); the FC code zip
# deflates it (10.5 MB either way). PyInstaller reads this variable when it writes the archives.
PYINSTALLER_ZLIB_COMPRESSION_LEVEL=0 "$BUILD_VENV/bin/pyinstaller" --onefile --noconfirm --clean --log-level WARN --strip \
    --name fcbuild-onefile --distpath "$DIST" --workpath "$WORK" --specpath "$WORK" \
    --add-binary "$libgcc_s:." \
    --hidden-import build_pipeline --hidden-import crcmod._crcfunext --hidden-import cdn_io \
    --hidden-import aliyunsdkcdn.request.v20180510.RefreshObjectCachesRequest \
    "${exclude_args[@]}" fc_runtime.py
"$BUILD_VENV/bin/python" - "$DIST/fcbuild-onefile" <<'PY' || die "the archive is deflated: PyInstaller ignored PYINSTALLER_ZLIB_COMPRESSION_LEVEL"
# Every zlib stream in the archive and in its module archive must be stored (level 0 or 1: the
# FLEVEL bits of the stream's second byte are 0). A deflated one costs every start again.
import sys
from PyInstaller.archive.readers import CArchiveReader
path = sys.argv[1]
archive = CArchiveReader(path)
with open(path, "rb") as f:
    def head(offset):
        f.seek(offset)
        return f.read(2)
    heads = [head(archive._start_offset + e[0]) for e in archive.toc.values() if e[3] and e[1] >= 2]
    for name, entry in archive.toc.items():
        if entry[4] == "z":
            pyz = archive.open_embedded_archive(name)
            heads += [head(pyz._start_offset + offset) for _, offset, _ in pyz.toc.values()]
deflated = [h for h in heads if h[0] & 0x0F == 8 and h[1] >> 6 != 0]
if deflated or len(heads) < 100:
    print(f"{path}: {len(deflated)} of {len(heads)} zlib streams deflated", file=sys.stderr)
    sys.exit(1)
PY
# --no-compress: the FC code zip compresses anyway, and unpacking xz added ~0.5 s to every start.
PATH="$(cd "$BUILD_VENV/bin" && pwd):$PATH" "$BUILD_VENV/bin/staticx" --no-compress "$DIST/fcbuild-onefile" "$DIST/bootstrap"
rm -f "$DIST/fcbuild-onefile"
chmod 755 "$DIST/bootstrap"
echo "built $DIST/bootstrap ($(du -h "$DIST/bootstrap" | cut -f1))"
