"""What fcbuild's binary does at start that the frozen floor does not: the price of each import and
of each bundled file, measured in the frozen form.

    python bench/startup_imports.py [--starts 9]     (needs `make bootstrap` first: it uses .venv-build)

Freezes fc_runtime.py (with build.sh's excludes and hidden imports) and bench/floor_server.py (with
its excludes) once more, with `-X importtime` and without staticx, starts each in turns until its port
accepts a connection, and prints:
- every module fcbuild imports before its port opens that the floor does not, with its own import
  time in the frozen binary (median over the starts), largest first, and their sum;
- every file the onefile bootloader unpacks at each start for fcbuild but not for the floor.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from startup_bench import BUILD_VENV, ROOT, STORED, free_port, start_env

BUILD_BIN = os.path.join(BUILD_VENV, "bin")


def build_sh_options(*, hidden: bool) -> list[str]:
    """The excludes build.sh gives PyInstaller, and with `hidden` its hidden imports."""
    with open(os.path.join(ROOT, "build.sh"), encoding="utf-8") as f:
        text = f.read()
    block = re.search(r"^excludes=\((.*?)^\)", text, re.M | re.S)
    if block is None:
        raise SystemExit("build.sh: no excludes=( ... ) block")
    args = []
    for module in block.group(1).split():
        args += ["--exclude-module", module]
    for module in re.findall(r"--hidden-import (\S+)", text) if hidden else ():
        args += ["--hidden-import", module]
    return args


def freeze(script: str, name: str, work: str, *, hidden: bool) -> str:
    argv = [os.path.join(BUILD_BIN, "pyinstaller"), "--onefile", "--noconfirm", "--log-level", "WARN"]
    argv += ["--name", name, "--distpath", work, "--workpath", os.path.join(work, "build-" + name)]
    argv += ["--specpath", os.path.join(work, "build-" + name), "--python-option", "X importtime"]
    env = {**os.environ, **STORED}
    subprocess.run(argv + build_sh_options(hidden=hidden) + [os.path.join(ROOT, script)], check=True, cwd=ROOT, env=env)
    return os.path.join(work, name)


def imports_before_port(binary: str) -> dict[str, int]:
    """{module: own import time in µs} of one start, up to the moment its port accepts a connection."""
    port = free_port()
    proc = subprocess.Popen(
        [binary, str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=start_env(),
        start_new_session=True,  # the bootloader's child as well
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)  # at once: what it imports after the port opened is not counted
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.wait()
    found = {}
    for line in err.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            own, _, name = line[len("import time:") :].split("|")
            found[name.strip()] = int(own)
    return found


def unpacked(binary: str) -> dict[str, int]:
    """{name: bytes} the onefile bootloader writes out at each start (binaries and data)."""
    out = subprocess.run(
        [os.path.join(BUILD_BIN, "pyi-archive_viewer"), "--list", binary], capture_output=True, text=True, check=True
    ).stdout
    files = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 6 and parts[4].strip("'") in ("b", "x"):
            files[parts[5].strip("'")] = int(parts[2])
    return files


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=9)
    args = parser.parse_args()
    if not os.path.exists(os.path.join(BUILD_BIN, "pyinstaller")):
        sys.exit("no .venv-build: run make bootstrap first")
    work = tempfile.mkdtemp(prefix="fcbuild-startup-imports-")
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    # The binaries are killed at once: what their bootloader unpacked stays in their TMPDIR, this one.
    os.environ["TMPDIR"] = os.path.join(work, "tmp")
    os.makedirs(os.environ["TMPDIR"])
    ours = freeze("fc_runtime.py", "fcbuild-importtime", work, hidden=True)
    floor = freeze("bench/floor_server.py", "floor-importtime", work, hidden=False)
    runs: dict[str, list[dict[str, int]]] = {ours: [], floor: []}
    for _ in range(args.starts):
        for binary in (floor, ours):
            runs[binary].append(imports_before_port(binary))
    floor_modules = set().union(*runs[floor])
    extra: dict[str, int] = {}
    for module in set().union(*runs[ours]) - floor_modules:
        extra[module] = int(statistics.median(run.get(module, 0) for run in runs[ours]))
    total = sum(extra.values())
    print(f"imported before the port opens by dist/bootstrap and not by the floor ({args.starts} starts each):")
    for module, us in sorted(extra.items(), key=lambda kv: -kv[1]):
        print(f"  {module:<28} {us / 1000:6.1f} ms")
    print(f"  {'sum':<28} {total / 1000:6.1f} ms")
    ours_files, floor_files = unpacked(ours), unpacked(floor)
    more = {name: size for name, size in ours_files.items() if name not in floor_files}
    print(f"unpacked at each start for fcbuild and not for the floor ({len(more)} files):")
    for name, size in sorted(more.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<64} {size / 1024:7.0f} KiB")
    print(f"  {'sum':<64} {sum(more.values()) / 1024:7.0f} KiB of {sum(ours_files.values()) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
