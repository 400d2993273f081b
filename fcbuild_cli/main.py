"""`fcbuild`: deploy a folder through the fcbuild function, and look after its releases.

Results go to stdout, progress and errors to stderr (colour only on a terminal, never with NO_COLOR).
Exit status: 0 done, 1 the build, deploy or rollback failed (the cause first), 2 bad usage or a
missing setting (one line saying what to set), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from typing import Any

from fcbuild_cli import pack
from fcbuild_cli.cloud import Creds, Function, UsageError, credentials, oss_bucket

EXAMPLES = {
    "deploy": """\
  fcbuild deploy                                   # this folder, with fcbuild.json's deploy section
  fcbuild deploy ./web --target oss://my-site/ --function fcbuild --region cn-hangzhou --source oss://my-sources/
  fcbuild deploy --preview feature-x --json        # to deploy.previews with {slug} feature-x
  fcbuild deploy --async --env API_URL=https://api.example.com""",
    "releases": """\
  fcbuild releases oss://my-site/
  fcbuild releases oss://my-site/ --json""",
    "rollback": """\
  fcbuild rollback oss://my-site/                  # to the release before the live one
  fcbuild rollback oss://my-site/ 1-6790c3e1-...   # to that kept release""",
    "status": """\
  fcbuild status 1-6790c3e1-... --target oss://my-site/
  fcbuild status 1-6790c3e1-... --json             # the whole status object""",
    "logs": """\
  fcbuild logs 1-6790c3e1-... --target oss://my-site/
  fcbuild logs 1-6790c3e1-... --follow             # until the build ends (exit 0 succeeded, 1 failed)""",
    "dev": """\
  fcbuild dev                                      # build this folder, serve it at http://127.0.0.1:8080/
  fcbuild dev ./web --port 3000
  fcbuild dev --once                               # build once, as CI would check it""",
}


def _examples(*commands: str) -> str:
    return "examples:\n" + "\n".join(EXAMPLES[c] for c in commands) + "\n"


class Out:
    def __init__(self) -> None:
        self.colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")

    def say(self, text: str, style: str = "") -> None:
        codes = {"ok": "32", "bad": "31", "dim": "2"}
        if self.colour and style in codes:
            text = f"\033[{codes[style]}m{text}\033[0m"
        print(text, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fcbuild",
        description=__doc__,
        epilog=_examples(*EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--function", help="the fcbuild function's name (deploy.function)")
    common.add_argument("--region", help="its region, e.g. cn-hangzhou (deploy.region)")
    common.add_argument(
        "--account-id", help="the account's id, for FC's endpoint (deploy.account_id, ALIBABA_CLOUD_ACCOUNT_ID)"
    )
    common.add_argument("--profile", help="a profile of ~/.aliyun/config.json (aliyun configure)")
    common.add_argument(
        "--fc-endpoint", help="FC's API (default https://<account>.<region>.fc.aliyuncs.com; FCBUILD_FC_ENDPOINT)"
    )
    common.add_argument("--oss-endpoint", help="OSS (default https://oss-<region>.aliyuncs.com; FCBUILD_OSS_ENDPOINT)")
    common.add_argument("--json", action="store_true", help="print the function's answer as JSON")
    common.add_argument("--config", default="", help="fcbuild.json to read the deploy section from (default: DIR's)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, shared: bool = True) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common] if shared else [], help=help, description=help,
                              epilog=_examples(name), formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip

    deploy = command("deploy", "pack DIR, upload it, build and deploy it with the fcbuild function")
    deploy.add_argument("dir", nargs="?", default=".", help="the project (default: .)")
    deploy.add_argument("--target", help="oss://bucket/prefix/ to deploy to (fcbuild.json's target)")
    deploy.add_argument("--source", help="oss://bucket/prefix/ for the source archive (deploy.source)")
    deploy.add_argument("--preview", metavar="NAME", help="deploy a preview: deploy.previews with {slug} NAME")
    deploy.add_argument("--async", dest="asynchronous", action="store_true", help="queue the build and return")
    deploy.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a build variable (repeatable)"
    )
    releases = command("releases", "list a target's kept releases, the live one first")
    releases.add_argument("target")
    rollback = command("rollback", "put a kept release back live")
    rollback.add_argument("target")
    rollback.add_argument("release", nargs="?", default="previous", help="a release id (default: previous)")
    status = command("status", "a build's status (exit 1 when it failed)")
    status.add_argument("request_id")
    status.add_argument("--target", help="the build's target (fcbuild.json's)")
    dev = command("dev", "build DIR on this machine as FC would and serve it (no cloud account)", shared=False)
    dev.add_argument("dir", nargs="?", default=".", help="the project (default: .)")
    dev.add_argument("--port", type=int, default=8080, help="where to serve the site (default 8080)")
    dev.add_argument("--once", action="store_true", help="build once and exit (0 built, 1 failed)")
    logs = command("logs", "a build's log, saved as it grows")
    logs.add_argument("request_id")
    logs.add_argument("--target", help="the build's target (fcbuild.json's)")
    logs.add_argument("--follow", "-f", action="store_true", help="print the log as it grows, until the build ends")
    return parser


def _config(args: argparse.Namespace) -> dict[str, Any]:
    path = args.config or os.path.join(getattr(args, "dir", "."), "fcbuild.json")
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8-sig") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})") from None
    return doc if isinstance(doc, dict) else {}


def _setting(args: argparse.Namespace, config: dict[str, Any], name: str, env: str = "") -> str:
    deploy = config.get("deploy") if isinstance(config.get("deploy"), dict) else {}
    value = getattr(args, name, None) or deploy.get(name) or (os.environ.get(env, "") if env else "")
    return str(value or "")


def _require(value: str, what: str) -> str:
    if not value:
        raise UsageError(what)
    return value


def _split(url: str, what: str) -> tuple[str, str]:
    if not url.startswith("oss://"):
        raise UsageError(f"{what}: an oss://bucket/prefix/ URL, not {url!r}")
    bucket, _, prefix = url[len("oss://") :].partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


class Session:
    def __init__(self, args: argparse.Namespace, config: dict[str, Any]) -> None:
        self.args, self.config = args, config
        self.region = _require(_setting(args, config, "region", "ALIBABA_CLOUD_REGION_ID"),
                               "no region: pass --region or set deploy.region in fcbuild.json")  # fmt: skip
        self.creds: Creds = credentials(args.profile or "")
        self.oss_endpoint = args.oss_endpoint or os.environ.get("FCBUILD_OSS_ENDPOINT", "")
        self._function: Function | None = None

    def function(self) -> Function:
        if self._function is None:
            name = _require(_setting(self.args, self.config, "function"),
                            "no function: pass --function or set deploy.function in fcbuild.json")  # fmt: skip
            endpoint = self.args.fc_endpoint or os.environ.get("FCBUILD_FC_ENDPOINT", "")
            account = _setting(self.args, self.config, "account_id", "ALIBABA_CLOUD_ACCOUNT_ID")
            self._function = Function(self.creds, name, self.region, endpoint, account)
        return self._function

    def bucket(self, name: str) -> Any:
        return oss_bucket(self.creds, name, self.region, self.oss_endpoint)


def _answer(out: Out, args: argparse.Namespace, result: Any) -> int:
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    if isinstance(result, dict) and result.get("errorType"):
        message = str(result.get("errorMessage", ""))
        out.say(f"failed: {result['errorType']}: {message.splitlines()[0] if message else ''}", "bad")
        for line in message.splitlines()[1:]:
            out.say(f"  {line}", "dim")
        return 1
    return 0


def cmd_deploy(out: Out, args: argparse.Namespace) -> int:
    config = _config(args)
    session = Session(args, config)
    target = args.target or (config.get("target") if isinstance(config.get("target"), str) else "")
    event: dict[str, Any] = {}
    if args.preview:
        import hooks

        previews = (config.get("deploy") or {}).get("previews") or ""
        if "{slug}" not in previews:
            raise UsageError('--preview needs deploy.previews in fcbuild.json, e.g. "oss://my-previews/{slug}/"')
        target = previews.replace("{slug}", hooks.slug(args.preview))
        event["build"] = {"environment": "preview"}
    target = _require(target, "no target: pass --target oss://bucket/prefix/ or set target in fcbuild.json")
    _split(target, "--target")
    for pair in args.env:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--env {pair!r}: NAME=VALUE")
        event.setdefault("build", {}).setdefault("env", {})[name] = value
    source = _require(
        _setting(args, config, "source"),
        "no source bucket: pass --source oss://bucket/prefix/ or set deploy.source in fcbuild.json",
    )
    src_bucket, src_prefix = _split(source, "--source")
    function = session.function()  # every setting checked before anything is packed or sent
    root = os.path.abspath(args.dir)
    if not os.path.isdir(root):
        raise UsageError(f"{args.dir}: not a folder")
    build = config.get("build") if isinstance(config.get("build"), dict) else {}
    files = pack.project_files(root, pack.output_folder(root, str(build.get("output_dir") or "")))
    if not files:
        raise UsageError(f"{args.dir}: no files to deploy (all ignored?)")
    data = pack.pack(root, files)
    key = f"{src_prefix}fcbuild-src-{pack.digest(data)[:32]}.tar.gz"
    bucket = session.bucket(src_bucket)
    out.say(f"packed {len(files)} files ({len(data) / 1024:.1f} KiB)")
    if _exists(bucket, key):
        out.say(f"oss://{src_bucket}/{key}: unchanged, not uploaded", "dim")
        uploaded = False
    else:
        _upload(out, bucket, key, data)
        out.say(f"uploaded oss://{src_bucket}/{key}")
        uploaded = True
    event.update({"source": f"oss://{src_bucket}/{key}", "target": target})
    if args.asynchronous:
        request_id, _ = function.invoke(event, asynchronous=True)
        out.say(f"queued as request {request_id}: fcbuild status {request_id} --target {target}")
        print(json.dumps({"requestId": request_id, "target": target}) if args.json else request_id)
        return 0
    out.say(f"building on {function.name}...")
    watcher = _StatusWatcher(out, session, target)
    watcher.start()
    try:
        request_id, result = function.invoke(event)
    except KeyboardInterrupt:
        watcher.stop()
        seen = watcher.request_id
        out.say(
            "interrupted: the build goes on in FC"
            + (f" (request {seen}: fcbuild status {seen} --target {target})" if seen else ""),
            "bad",
        )
        return 130
    finally:
        watcher.stop()
    code = _answer(out, args, result)
    if code:
        _log_tail(out, session, str(result.get("errorMessage", "")))
        out.say(f"request {request_id}: fcbuild logs {request_id} --target {target}", "dim")
        return code
    files_doc = result.get("files") or {}
    out.say(
        f"deployed {result.get('target', target)}: release {result.get('release', request_id)}, "
        f"{files_doc.get('uploaded', 0)} files uploaded, {files_doc.get('skipped', 0)} unchanged"
        f"{'' if uploaded else ' (source unchanged)'}",
        "ok",
    )
    if not args.json:
        url = (config.get("deploy") or {}).get("url") if isinstance(config.get("deploy"), dict) else ""
        print(url or result.get("target", target))
    return 0


def _exists(bucket: Any, key: str) -> bool:
    import oss2

    try:
        return bool(bucket.object_exists(key))
    except oss2.exceptions.OssError as exc:
        raise UsageError(
            f"oss://{bucket.bucket_name}: {exc.code or exc.status} ({exc.message or 'check the bucket and its region'})"
        ) from None


MULTIPART_OVER = 16 * 1024 * 1024  # larger archives go up in parts
PART_SIZE = 8 * 1024 * 1024


def _upload(out: Out, bucket: Any, key: str, data: bytes) -> None:
    """One PUT, or for a large archive a resumable multipart upload: a run that was interrupted
    leaves no object, and the next goes on from the parts already up (oss2 keeps its record under
    ~/.fcbuild, which holds for the same file at the same path with the same time: the archive is
    kept at ~/.fcbuild/archives/<its key's name> until it is up)."""
    import oss2

    shown = [-1]

    def progress(done: int, total: int | None) -> None:
        if total and sys.stderr.isatty():
            percent = int(done * 100 / total)
            if percent != shown[0]:
                shown[0] = percent
                print(f"\r  uploading {percent:3d}%", end="", file=sys.stderr, flush=True)

    try:
        if len(data) <= MULTIPART_OVER:
            bucket.put_object(key, data, progress_callback=progress)
        else:
            home = os.path.join(os.path.expanduser("~"), ".fcbuild")
            kept = _keep_archive(os.path.join(home, "archives"), os.path.basename(key), data)
            store = oss2.ResumableStore(root=home)
            oss2.resumable_upload(bucket, key, kept, store=store, part_size=PART_SIZE, progress_callback=progress)
            os.remove(kept)
    except oss2.exceptions.OssError as exc:
        raise UsageError(
            f"upload to oss://{bucket.bucket_name}/{key}: {exc.code or exc.status} {exc.message}"
        ) from None
    finally:
        if shown[0] >= 0:
            print(file=sys.stderr)


def _keep_archive(folder: str, name: str, data: bytes) -> str:
    """The archive at folder/name, written once: the same bytes keep the same file and time."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, name)
    if os.path.isfile(path) and os.path.getsize(path) == len(data):
        return path
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.replace(path + ".part", path)
    return path


class _StatusWatcher:
    """While the function builds: the status objects that appear under the target, shown as they change."""

    def __init__(self, out: Out, session: Session, target: str) -> None:
        self.out, self.session = out, session
        self.bucket_name, self.prefix = _split(target, "target")
        self.request_id = ""
        self.tail: _LogTail | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.time()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import oss2

        bucket = self.session.bucket(self.bucket_name)
        folder = f"{self.prefix}.fcbuild/status/"
        last = ""
        while not self._stop.wait(1.0):
            try:
                fresh = [o for o in oss2.ObjectIterator(bucket, prefix=folder) if o.last_modified >= self.started - 2]
                if not fresh:
                    continue
                newest = max(fresh, key=lambda o: o.last_modified)
                doc = json.loads(bucket.get_object(newest.key).read())
            except (oss2.exceptions.OssError, ValueError, OSError):
                continue
            self.request_id = str(doc.get("requestId", ""))
            state = f"{doc.get('status')}"
            if state != last:
                last = state
                self.out.say(f"  request {self.request_id}: {state}", "dim")
            if self.tail is None:
                self.tail = _LogTail(bucket, f"{self.prefix}.fcbuild/logs/{_safe(self.request_id)}.log")
            for line in self.tail.new_lines():
                self.out.say(f"  {line}")


def _safe(request_id: str) -> str:
    """A request id as the function names its status and log objects (build_pipeline._safe_name)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", request_id)[:80]


class _LogTail:
    """A build log in OSS as it grows (the function puts it again every few seconds while it builds)."""

    def __init__(self, bucket: Any, key: str) -> None:
        self.bucket, self.key, self.offset, self._partial = bucket, key, 0, b""

    def new_bytes(self) -> bytes:
        import oss2

        try:
            got = self.bucket.get_object(self.key, byte_range=(self.offset, None)).read()
        except (oss2.exceptions.NoSuchKey, oss2.exceptions.ServerError):
            return b""
        except oss2.exceptions.OssError as exc:
            if exc.status == 416:  # nothing past what was read
                return b""
            raise
        self.offset += len(got)
        return got

    def new_lines(self) -> list[str]:
        data = self._partial + self.new_bytes()
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [line.decode("utf-8", "replace") for line in lines]


def _log_tail(out: Out, session: Session, message: str, lines: int = 20) -> None:
    found = re.search(r"\(build log: oss://([^/]+)/([^)\s]+)\)", message)
    if not found:
        return
    try:
        text = session.bucket(found[1]).get_object(found[2]).read().decode("utf-8", "replace")
    except Exception:  # the log is a courtesy: the cause was already printed
        return
    out.say(f"the build log's last {lines} lines (oss://{found[1]}/{found[2]}):", "dim")
    for line in text.splitlines()[-lines:]:
        out.say(f"  {line}")


def cmd_releases(out: Out, args: argparse.Namespace) -> int:
    session = Session(args, _config(args))
    _, result = session.function().invoke({"releases": {"target": args.target}})
    code = _answer(out, args, result)
    if code or args.json:
        return code
    for release in result.get("releases", []):
        live = "live " if release.get("live") else "     "
        print(f"{live}{release.get('id')}  {release.get('deployedAt', '')}  {release.get('files', '')} files")
    return 0


def cmd_rollback(out: Out, args: argparse.Namespace) -> int:
    session = Session(args, _config(args))
    _, result = session.function().invoke({"rollback": {"target": args.target, "release": args.release}})
    code = _answer(out, args, result)
    if not code:
        out.say(f"{result.get('target')} is release {result.get('rolledBackTo')} again "
                f"({(result.get('files') or {}).get('putBack', 0)} files put back)", "ok")  # fmt: skip
        if not args.json:
            print(result.get("rolledBackTo"))
    return code


def _meta(args: argparse.Namespace, kind: str) -> tuple[Session, Any, str]:
    config = _config(args)
    target = args.target or (config.get("target") if isinstance(config.get("target"), str) else "")
    target = _require(target, "no target: pass --target oss://bucket/prefix/ or set target in fcbuild.json")
    bucket_name, prefix = _split(target, "--target")
    session = Session(args, config)
    folder, suffix = ("status", "json") if kind == "status" else ("logs", "log")
    key = f"{prefix}.fcbuild/{folder}/{_safe(args.request_id)}.{suffix}"
    return session, session.bucket(bucket_name), key


def cmd_status(out: Out, args: argparse.Namespace) -> int:
    import oss2

    _, bucket, key = _meta(args, "status")
    try:
        doc = json.loads(bucket.get_object(key).read())
    except oss2.exceptions.NoSuchKey:
        raise UsageError(
            f"no status for {args.request_id} under that target (oss://{bucket.bucket_name}/{key})"
        ) from None
    print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else doc.get("status", "?"))
    return 1 if doc.get("status") == "failed" else 0


def cmd_logs(out: Out, args: argparse.Namespace) -> int:
    import oss2

    _, bucket, key = _meta(args, "logs")
    if args.follow:
        _, _, status_key = _meta(args, "status")
        return _follow(bucket, key, status_key)
    try:
        sys.stdout.write(bucket.get_object(key).read().decode("utf-8", "replace"))
    except oss2.exceptions.NoSuchKey:
        raise UsageError(
            f"no saved log for {args.request_id} (oss://{bucket.bucket_name}/{key}): a log is saved when the build ends"
        ) from None
    return 0


def _follow(bucket: Any, log_key: str, status_key: str) -> int:
    """Print the log as it grows until the build's status says it ended; 0 succeeded, 1 failed."""
    import oss2

    tail = _LogTail(bucket, log_key)
    while True:
        try:
            status = json.loads(bucket.get_object(status_key).read()).get("status", "")
        except (oss2.exceptions.NoSuchKey, ValueError):
            status = ""
        chunk = tail.new_bytes()
        if chunk:
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
        if status in ("succeeded", "failed"):
            time.sleep(0.5)  # the final save follows the status by a moment
            sys.stdout.write(tail.new_bytes().decode("utf-8", "replace"))
            return 0 if status == "succeeded" else 1
        time.sleep(1.0)


def cmd_dev(out: Out, args: argparse.Namespace) -> int:
    from fcbuild_cli import dev

    return dev.run(os.path.abspath(args.dir), args.port, out, once=args.once)


COMMANDS = {
    "deploy": cmd_deploy,
    "releases": cmd_releases,
    "rollback": cmd_rollback,
    "status": cmd_status,
    "logs": cmd_logs,
    "dev": cmd_dev,
}


def main(argv: list[str] | None = None) -> int:
    out = Out()
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](out, args)
    except UsageError as exc:
        out.say(f"fcbuild: {exc}", "bad")
        return 2
    except KeyboardInterrupt:
        out.say("interrupted", "bad")
        return 130


if __name__ == "__main__":
    sys.exit(main())
