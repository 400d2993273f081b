"""fcbuild's HTTP face: the server that Alibaba Cloud Function Compute starts and calls.

FC's custom-runtime contract, in short: FC runs `./bootstrap PORT`, waits for the port,
then sends `POST /initialize` (if an initializer is configured), `POST /invoke` with the
event as the raw body, and `GET /pre-stop` before it destroys the instance. A function
error is a 404 with `x-fc-status: 404`; success is 200 with `x-fc-status: 200`. FC's
console reads `FC Invoke Start/End RequestId: <id>` lines from stdout.

Nothing heavy is imported here: the build pipeline (and oss2 with it) is imported after
the port is open, so FC's health check sees the port quickly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import selectors
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import peer
import sandbox
from context import CREDENTIAL_VARS, FcContext, KnownSecrets, redact
from errors import FcBuildError, InvalidRequest, ShuttingDown
from settings import PipelineSettings

__version__ = "0.1.0"

HDR_FC_STATUS = "x-fc-status"
HDR_CONTROL_PATH = "x-fc-control-path"
# FC marks a request that came through an HTTP trigger or a custom domain with this control path;
# a client cannot send x-fc-* headers itself (FC refuses them with 400 InvalidArgument).
CONTROL_PATH_HTTP = "/http-invoke"
HDR_BASE_PATH = "x-fc-base-path"
HOOKS_PREFIX = "/hooks/"  # webhooks: the only paths a request through an HTTP trigger reaches
MAX_SYNC_BODY = 32 * 1024 * 1024  # FC's synchronous invocation payload limit
MAX_DRAIN = 4 * MAX_SYNC_BODY  # read and discard up to this much of a refused body to keep the connection usable
MAX_JSON_DEPTH = 32  # a build request is 4 levels deep; anything far deeper is not one
MAX_JSON_NUMBER_CHARS = 32  # no field of a build request needs a longer number
WARM_UP_WAIT_S = 0.2  # the warm-up import starts after the first answer, or this long after the port opened

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_STARTUP_FAILURE = 3

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing itself costs ~10 ms of every cold start; annotations here are strings
    from typing import Any, Literal

    LogFormat = Literal["text", "json"]

logger = logging.getLogger("fcbuild")


@dataclass(frozen=True)
class RuntimeConfig:
    host: str = "0.0.0.0"
    port: int = 9000
    log_level: str = "INFO"
    log_format: LogFormat = "text"
    stop_grace_s: float = 60.0
    prestop_linger_s: float = 3.0  # after /pre-stop, how long to wait for FC's signal before exiting
    warm_import: bool = True
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], argv: Sequence[str]) -> RuntimeConfig:
        """Parse the command line and the environment; raise ValueError on a bad value.

        The port is the argument, else FC_CUSTOM_LISTEN_PORT, else FC_SERVER_PORT, else 9000.
        """
        args = _parse_args(argv)
        raw_port = args.port or environ.get("FC_CUSTOM_LISTEN_PORT") or environ.get("FC_SERVER_PORT") or "9000"
        if not raw_port.isdigit() or int(raw_port) > 65535:
            raise ValueError(f"port must be a number from 0 to 65535, got {raw_port!r}")
        log_format = environ.get("FCBUILD_LOG_FORMAT", "text").lower()
        if log_format not in ("text", "json"):
            raise ValueError(f"FCBUILD_LOG_FORMAT must be text or json, got {log_format!r}")
        log_level = environ.get("FCBUILD_LOG_LEVEL", "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"FCBUILD_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
        try:
            grace = float(environ.get("FCBUILD_STOP_GRACE_S", "60"))
            linger = float(environ.get("FCBUILD_PRESTOP_LINGER_S", "3"))
        except ValueError:
            raise ValueError("FCBUILD_STOP_GRACE_S and FCBUILD_PRESTOP_LINGER_S must be numbers of seconds") from None
        return cls(
            host=args.host,
            port=int(raw_port),
            log_level=log_level,
            log_format=log_format,  # type: ignore[arg-type]
            stop_grace_s=grace,
            prestop_linger_s=linger,
            warm_import=environ.get("FCBUILD_WARM_IMPORT", "1") not in ("0", "false", "no"),
            pipeline=PipelineSettings.from_env(environ, frozen=bool(getattr(sys, "frozen", False))),
        )


def _parse_args(argv: Sequence[str]) -> Any:
    """FC starts `bootstrap PORT`: that form (and `PORT --host HOST`, as tests start it) needs no
    argparse (12 ms of imports before the port opens)."""
    if len(argv) <= 1 and all(a.isdigit() for a in argv):
        return types.SimpleNamespace(port=argv[0] if argv else None, host="0.0.0.0")
    if len(argv) == 3 and argv[0].isdigit() and argv[1] == "--host" and not argv[2].startswith("-"):
        return types.SimpleNamespace(port=argv[0], host=argv[2])
    import argparse

    parser = argparse.ArgumentParser(
        prog="bootstrap",
        description="fcbuild: a Function Compute custom runtime that builds a frontend project "
        "from OSS with Node.js and deploys the output back to OSS.",
    )
    parser.add_argument("port", nargs="?", help="port to listen on (0 picks a free one)")
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (FC needs 0.0.0.0)")
    parser.add_argument("--version", action="version", version=f"fcbuild {__version__}")
    return parser.parse_args(list(argv))


# --- logging -------------------------------------------------------------------------------


class _LineFormatter(logging.Formatter):
    """FC's recommended line: `<utc time> <request id> [LEVEL] message`.

    A record with `raw=True` (FC's Start/End markers) is written as its bare message.
    Every record may carry `secrets`: values replaced by `***` wherever they appear, as is every
    credential the runtime has seen (`known`).
    """

    def __init__(self, known: KnownSecrets | None = None) -> None:
        super().__init__()
        self.known = known

    def format(self, record: logging.LogRecord) -> str:
        message = self._message(record)
        if getattr(record, "raw", False):
            return message
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        rid = getattr(record, "request_id", "-")
        return f"{stamp}.{int(record.msecs):03d}Z {rid} [{record.levelname}] {message}"

    def _message(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{''.join(traceback.format_exception(*record.exc_info)).rstrip()}"
        message = redact(message, getattr(record, "secrets", ()))
        return redact(message, self.known.values()) if self.known is not None else message


class _JsonFormatter(_LineFormatter):
    """One JSON object a line, for SLS index queries. Markers stay bare lines: FC reads them."""

    def format(self, record: logging.LogRecord) -> str:
        message = self._message(record)
        if getattr(record, "raw", False):
            return message
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "requestId": getattr(record, "request_id", None),
            "logger": record.name,
            "message": message,
        }
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(config: RuntimeConfig, stream: Any = None, known: KnownSecrets | None = None) -> None:
    stream = stream or sys.stdout
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(line_buffering=True)  # FC collects stdout; a frozen binary would block-buffer it
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JsonFormatter(known) if config.log_format == "json" else _LineFormatter(known))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level)
    # oss2 and urllib3 log whole request headers (Authorization, security token) at DEBUG.
    for noisy in ("oss2", "urllib3", "requests"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class RequestLog(logging.LoggerAdapter):
    """A logger bound to one request: its id on every line, its credentials redacted."""

    def __init__(self, base: logging.Logger, request_id: str, secrets: Sequence[str] = ()) -> None:
        super().__init__(base, {"request_id": request_id, "secrets": tuple(secrets)})

    @property
    def request_id(self) -> str:
        return self.extra["request_id"]  # type: ignore[index]

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}  # type: ignore[dict-item]
        return msg, kwargs

    def marker(self, text: str) -> None:
        self.info("%s RequestId: %s", text, self.request_id, extra={"raw": True})


# --- outcomes -> responses ----------------------------------------------------------------


def parse_event(body: bytes) -> dict[str, Any]:
    """Decode the invoke body as a JSON object, whatever Content-Type FC sent."""
    if not body.strip():
        raise InvalidRequest("body: empty; expected a JSON object (the build request)")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"body: not UTF-8 text (byte {exc.start})") from None
    try:
        event = json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"body: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InvalidRequest(f"body: JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    except _JsonLimit as exc:
        raise InvalidRequest(f"body: {exc}") from None
    if not isinstance(event, dict):
        raise InvalidRequest(f"body: expected a JSON object, got {_json_type(event)}")
    _check_json(event)
    return event


class BodyTooLarge(InvalidRequest):
    """A body over the route's limit (FC's 32 MB for an invocation, FCBUILD_HOOK_MAX_KB for a webhook)."""


class _JsonLimit(ValueError):
    pass


def _json_int(text: str) -> int:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _JsonLimit(f"a number of {len(text)} characters (the limit is {MAX_JSON_NUMBER_CHARS})")
    return int(text)


def _json_float(text: str) -> float:
    if len(text) > MAX_JSON_NUMBER_CHARS:
        raise _JsonLimit(f"a number of {len(text)} characters (the limit is {MAX_JSON_NUMBER_CHARS})")
    return float(text)


def _json_constant(name: str) -> float:
    raise _JsonLimit(f"{name} is not JSON")


def _check_json(value: Any) -> None:
    """Depth within the limit; every string valid Unicode (JSON's \\u escapes can name a lone
    surrogate); no control character in a field name. Iterative: no recursion limit to hit."""
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, str):
            _valid_text(item, "a string")
            continue
        if isinstance(item, dict):
            for key in item:
                _valid_text(key, "a field name")
                if any(ch < " " or ch == "\x7f" for ch in key):
                    raise InvalidRequest(f"body: a field name has a control character: {key[:80]!r}")
            item = list(item.values())
        if isinstance(item, list):
            if depth > MAX_JSON_DEPTH:
                raise InvalidRequest(f"body: JSON nested more than {MAX_JSON_DEPTH} levels deep")
            todo.extend((child, depth + 1) for child in item)


def _valid_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"body: {what} holds a lone surrogate (\\u{ord(text[exc.start]):04x})") from None


def error_response(exc: BaseException, request_id: str, secrets: Sequence[str] = ()) -> tuple[int, dict[str, str]]:
    """The one mapping from a failure to FC's function-error response (status 404)."""
    if isinstance(exc, FcBuildError):
        error_type, message = exc.error_type, str(exc)
    else:
        error_type, message = "Internal", f"{type(exc).__name__}: {exc}"
    body = {"errorType": error_type, "errorMessage": redact(message, secrets), "requestId": request_id}
    return HTTPStatus.NOT_FOUND, body


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


# --- child processes ------------------------------------------------------------------------


class ChildProcesses:
    """Process groups of running builds, so a stop can end them all.

    The handler threads are daemons and die with the process; a build's `npm` would not,
    so the stop path terminates the groups itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: set[int] = set()

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)

    def snapshot(self) -> set[int]:
        with self._lock:
            return set(self._groups)

    def terminate_all(self, grace_s: float = 3.0) -> int:
        with self._lock:
            groups = list(self._groups)
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while groups and time.monotonic() < deadline:
            groups = [g for g in groups if _group_alive(g)]
            time.sleep(0.05)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
        return len(groups)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# --- the server -----------------------------------------------------------------------------


class FcServer(ThreadingHTTPServer):
    """The HTTP server and all the state that changes while it runs."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # the default backlog of 5 drops connections in a burst of clients

    def __init__(
        self, config: RuntimeConfig, environ: Mapping[str, str], known_secrets: KnownSecrets | None = None
    ) -> None:
        super().__init__((config.host, config.port), FcRequestHandler)
        self.config = config
        self.environ = environ  # the context's fallback: FC 3.0 passes the credentials only here
        self.known_secrets = known_secrets or KnownSecrets()
        self.known_secrets.add(environ.get(name, "") for name in (*CREDENTIAL_VARS, "FCBUILD_GIT_TOKEN"))
        self.known_secrets.add(config.pipeline.hook_secret_values())
        self.children = ChildProcesses()
        self._state = threading.Condition()
        self._active_requests = 0
        self._invocations = 0
        self._stop_reason = ""
        self._stop_state: Literal["running", "stopping", "stopped"] = "running"
        self._init_lock = threading.Lock()
        self._initialized = False
        self._instance_lock = threading.Lock()
        self._instance: Any = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._signalled_at = 0.0
        self._stopped_by_hook = False
        self._first_answer = threading.Event()

    def server_bind(self) -> None:
        # HTTPServer's own asks DNS for the host's full name (a reverse lookup, ~5 ms at every
        # start); nothing here uses it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Called for each new connection before anything is read from it: a build's processes
        (and whatever they left running) get nothing from the runtime's port, not even an answer."""
        refusal = self.refusal(request, client_address)
        if refusal:
            logger.warning("refused a connection from %s:%s: %s", client_address[0], client_address[1], refusal)
            return False
        return True

    def refusal(self, request: Any, client_address: Any) -> str:
        """Why a connection is refused ("" when it is not): its socket belongs to a build user, to a
        descendant of the runtime (a build, when builds share the runtime's user), or to nobody any more."""
        try:
            who = peer.identify(client_address[:2], request.getsockname()[:2])
        except (OSError, ValueError) as exc:
            return f"could not tell who is calling ({exc})"
        if not who.local:
            return ""
        if who.uid is None or not who.inode:
            return who.describe()
        first, last = self.config.pipeline.build_uids
        if sandbox.is_root() and first <= who.uid <= last:
            return f"{who.describe()}, a build user"
        holder = peer.held_by_descendant(who.inode)
        if holder is not None:
            return f"{who.describe()}, process {holder}, started by a build"
        return ""

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            logger.debug("connection from %s ended: %s", client_address, exc)
        else:
            logger.exception("error while serving %s", client_address)

    # lifecycle

    def serve_until_stopped(self) -> None:
        """Accept connections until a stop is requested; returns at once when it is."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.socket, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stop_reason:
                for key, _ in sel.select():
                    if key.fileobj == self._wake_r:
                        os.read(self._wake_r, 64)
                    elif not self._stop_reason:
                        self.handle_request()

    def signal_received(self, name: str) -> None:
        """The SIGTERM/SIGINT handler: a stop, and the time of the last signal (see wait_out_signals)."""
        self._signalled_at = time.monotonic()
        self.request_stop(name)

    def wait_out_signals(self, quiet_s: float = 0.25) -> None:
        """Before exiting: FC may signal the process after PreStop, and more than once. The bootloaders
        of the frozen binary forward signals while this process lives, but die of one that arrives while
        they clean up after it. So stay until signals stop coming: after /pre-stop until the first one
        (at most FCBUILD_PRESTOP_LINGER_S), then until none has come for `quiet_s`."""
        started = time.monotonic()
        while True:
            last = self._signalled_at
            target = (
                last + quiet_s if last else started + (self.config.prestop_linger_s if self._stopped_by_hook else 0)
            )
            left = target - time.monotonic()
            if left <= 0:
                return
            try:
                ready, _, _ = select.select([self._wake_r], [], [], left)
                if ready:
                    os.read(self._wake_r, 64)
            except (OSError, ValueError):
                time.sleep(min(left, 0.05))

    def request_stop(self, reason: str) -> None:
        """Safe from a signal handler, at any moment: sets the reason and wakes the accept loop
        (once the server is closed there is nothing to wake)."""
        if not self._stop_reason:
            self._stop_reason = reason
        if self._closed:
            return
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # full (a wake-up is pending anyway) or closed meanwhile
            pass

    def graceful_stop(self, reason: str, log: logging.LoggerAdapter | logging.Logger = logger) -> None:
        """Stop taking work, let running invocations finish within the grace period, then end them.

        Shared by SIGTERM, SIGINT and `/pre-stop`; a second caller waits for the first.
        """
        self.request_stop(reason)
        with self._state:
            if self._stop_state != "running":
                self._state.wait_for(lambda: self._stop_state == "stopped")
                return
            self._stop_state = "stopping"
            running = self._invocations
        grace = self.config.stop_grace_s
        log.info("stopping (%s): waiting up to %.0fs for %d running invocation(s)", reason, grace, running)
        with self._state:
            finished = self._state.wait_for(lambda: self._invocations == 0, timeout=grace)
        if not finished:
            killed = self.children.terminate_all()
            log.warning("grace period over: terminated the build process groups (%d needed SIGKILL)", killed)
            with self._state:
                self._state.wait_for(lambda: self._invocations == 0, timeout=10)
        if self._instance is not None:
            left = self._instance.end_all()
            if left:
                log.warning("killed %d process(es) that builds had left running", left)
        if self._instance is not None:
            left = self._instance.flush(timeout=max(1.0, min(60.0, grace)))
            if left:
                log.warning("%d background task(s) still running at exit", left)
        with self._state:
            self._stop_state = "stopped"
            self._state.notify_all()
        log.info("stopped taking work")

    def note_hook_stop(self) -> None:
        self._stopped_by_hook = True

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being answered (so a /pre-stop response leaves before exit)."""
        with self._state:
            return self._state.wait_for(lambda: self._active_requests == 0, timeout=timeout)

    def server_close(self) -> None:
        super().server_close()
        self._closed = True
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    @property
    def wake_fd(self) -> int:
        """Write end of the accept loop's wake-up pipe (non-blocking)."""
        return self._wake_w

    @property
    def stop_reason(self) -> str:
        return self._stop_reason

    # request bookkeeping

    def track(self, delta: int, *, invocation: bool = False) -> None:
        with self._state:
            self._active_requests += delta
            if invocation:
                self._invocations += delta
            self._state.notify_all()

    # the work

    def pipeline(self) -> Any:
        """The build pipeline module, imported on first use (it brings oss2 with it)."""
        import build_pipeline

        return build_pipeline

    def start_warm_up(self) -> None:
        if self.config.warm_import:
            threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()

    def answered(self) -> None:
        """A request was answered: the warm-up may take the interpreter now."""
        self._first_answer.set()

    def _warm_up(self) -> None:
        # The import holds the interpreter lock for tens of milliseconds at a time: it waits until
        # the first request (FC's /initialize or /invoke, or a health check) has been answered.
        self._first_answer.wait(WARM_UP_WAIT_S)
        try:
            self.pipeline()
            if self.config.pipeline.repos:  # webhooks configured
                import push_deploy  # noqa: F401
        except Exception:
            logger.exception("warm-up import failed; the first invocation will report it")

    def initialize(self, log: RequestLog) -> dict[str, Any]:
        """Prepare the instance once: the workspace root, checked. Idempotent. The pipeline's import
        goes on in the background (the warm-up): FC's cold start waits for this answer."""
        with self._init_lock:
            if self._initialized:
                return {"initialized": True, "already": True}
            root = self.config.pipeline.workspace_root
            sandbox.ensure_root(root)
            log.info("workspace root %s ready", root)
            self._initialized = True
        return {"initialized": True, "already": False}

    def hook(self, ctx: FcContext, route: list[str], headers: Any, body: bytes, log: RequestLog) -> tuple[int, Any]:
        if self._stop_reason:
            return 503, {"error": "ShuttingDown", "message": "this instance is stopping; the provider will retry"}
        import push_deploy  # with oss_io (oss2), for the delivery's record

        return push_deploy.handle(ctx, route, headers, body, self.config.pipeline, log)

    def invoke(self, ctx: FcContext, event: dict[str, Any], log: RequestLog) -> dict[str, Any]:
        if self._stop_reason:
            raise ShuttingDown("this instance is stopping and takes no new builds; FC will retry on another")
        return self.pipeline().handle_invoke(ctx, event, instance=self.instance(), log=log)

    def instance(self) -> Any:
        """The pipeline's per-instance state (deploy locks, background work), made on first use."""
        with self._instance_lock:
            if self._instance is None:
                self._instance = self.pipeline().Instance(
                    self.config.pipeline, self.children, self.known_secrets.values, log=logger
                )
            return self._instance


class FcRequestHandler(BaseHTTPRequestHandler):
    server: FcServer
    protocol_version = "HTTP/1.1"  # keep-alive: FC's agent reuses connections
    timeout = None  # no idle timeout: FC keeps connections open for 15 minutes and more
    route_path = ""  # the path that chose the handler (x-fc-base-path and legacy routing applied)

    def setup(self) -> None:
        super().setup()
        # A response goes out in one write; no-delay keeps a small one from waiting on the peer's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: " + format, *args)

    # routing

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        control = self.headers.get(HDR_CONTROL_PATH, "")
        base = self.headers.get(HDR_BASE_PATH, "").rstrip("/")
        if base and path.startswith(base + "/"):
            path = path[len(base) :]  # an FC 2.0 HTTP function without a custom domain
        # The webhooks are public (the provider's own signature decides); everything else answers FC alone.
        routes = next((r for prefix, r in PUBLIC_PREFIXES.items() if path.startswith(prefix)), None)
        if routes is None and control == CONTROL_PATH_HTTP:
            # Through an HTTP trigger: the public internet. It reaches the public routes only.
            self._discard_body()
            message = f"{path} answers Function Compute's own calls, not requests through an HTTP trigger"
            self.send_json(403, {"error": "Forbidden", "message": message}, fc_status=False)
            return
        if routes is None:
            if path == "/" and control:
                path = control  # legacy FC agents post everything to / with this header
            routes = ROUTES.get(path)
        if routes is None:
            self._discard_body()
            self.send_json(404, {"error": "NotFound", "message": f"no such path: {method} {path}"}, fc_status=False)
            return
        handler = routes.get(method)
        if handler is None:
            self._discard_body()
            allow = ", ".join(sorted(routes))
            message = {"error": "MethodNotAllowed", "message": f"{path} takes {allow}"}
            self.send_json(405, message, [("Allow", allow)], fc_status=False)
            return
        self.route_path = path
        self.server.track(+1)
        try:
            handler(self)
        finally:
            self.server.track(-1)

    def handle_invoke(self) -> None:
        ctx = self._context()
        log = RequestLog(logger, ctx.request_id, ctx.secrets())
        log.marker("FC Invoke Start")
        self.server.track(+1, invocation=True)
        try:
            event = parse_event(self._read_body())
            status, payload = 200, self.server.invoke(ctx, event, log)
        except Exception as exc:
            status, payload = self._failure(exc, ctx, log)
        finally:
            self.server.track(-1, invocation=True)
        log.marker("FC Invoke End")
        self.send_json(status, payload)

    def handle_hook(self) -> None:
        ctx = self._context()
        log = RequestLog(logger, ctx.request_id, ctx.secrets())
        route = [unquote(part) for part in self.route_path[len(HOOKS_PREFIX) :].split("/") if part]
        limit = self.server.config.pipeline.hook_max_bytes
        try:
            body = self._read_body(limit)
        except InvalidRequest as exc:
            too_large = isinstance(exc, BodyTooLarge)
            log.warning("webhook refused: %s", exc)
            error = {"error": "TooLarge" if too_large else "BadRequest", "message": str(exc)}
            self.send_json(413 if too_large else 400, error, fc_status=False)
            return
        what = "build" if route[:1] == ["build"] else "/".join(route)  # a deploy hook's id is its secret
        log.info("webhook %s (%d bytes)", what, len(body))
        try:
            status, payload = self.server.hook(ctx, route, self.headers, body, log)
        except Exception:
            log.exception("webhook %s failed", what)
            status, payload = (
                500,
                {"error": "Internal", "message": "the webhook could not be handled; see the function's log"},
            )
        self.send_json(status, payload, fc_status=False)

    def handle_initialize(self) -> None:
        ctx = self._context()
        log = RequestLog(logger, ctx.request_id, ctx.secrets())
        log.marker("FC Initialize Start")
        try:
            self._discard_body()
            status, payload = 200, self.server.initialize(log)
        except Exception as exc:
            status, payload = self._failure(exc, ctx, log)
        log.marker("FC Initialize End")
        self.send_json(status, payload)

    def handle_pre_stop(self) -> None:
        ctx = self._context()
        log = RequestLog(logger, ctx.request_id)
        log.marker("FC PreStop Start")
        self.server.note_hook_stop()
        self.server.graceful_stop("PreStop", log)
        log.marker("FC PreStop End")
        self.close_connection = True
        self.send_json(200, {"stopped": True})

    def handle_pre_freeze(self) -> None:
        ctx = self._context()
        log = RequestLog(logger, ctx.request_id)
        log.marker("FC PreFreeze Start")
        log.marker("FC PreFreeze End")
        self.send_json(200, {"frozen": True})

    def handle_health(self) -> None:
        status = "stopping" if self.server.stop_reason else "ok"
        self.send_json(200, {"status": status, "version": __version__}, fc_status=False)

    # helpers

    def _context(self) -> FcContext:
        ctx = FcContext.from_headers(
            self.headers, self.server.environ, default_timeout_s=self.server.config.pipeline.default_timeout_s
        )
        self.server.known_secrets.add(ctx.secrets())
        return ctx

    def _failure(self, exc: Exception, ctx: FcContext, log: RequestLog) -> tuple[int, dict[str, Any]]:
        status, payload = error_response(exc, ctx.request_id, (*ctx.secrets(), *self.server.known_secrets.values()))
        if isinstance(exc, FcBuildError):
            log.error("%s: %s", payload["errorType"], payload["errorMessage"])
        else:
            log.exception("unexpected failure, answered as Internal")
        return status, payload

    def _read_body(self, limit: int = MAX_SYNC_BODY) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length") or "0"
        if not raw.isdigit():
            self.close_connection = True
            raise InvalidRequest(f"body: bad Content-Length {raw!r}")
        length = int(raw)
        if length > limit:
            self._drain(length)
            raise BodyTooLarge(f"body: {length} bytes is over the limit of {limit} bytes")
        return self.rfile.read(length)

    def _read_chunked(self, limit: int = MAX_SYNC_BODY) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                self.close_connection = True
                raise InvalidRequest("body: malformed chunked encoding") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise BodyTooLarge(f"body: over the limit of {limit} bytes")
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _discard_body(self) -> None:
        raw = self.headers.get("Content-Length") or "0"
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower() or not raw.isdigit():
            self.close_connection = True
        else:
            self._drain(int(raw))

    def _drain(self, length: int) -> None:
        if length > MAX_DRAIN:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def send_json(
        self, status: int, payload: Any, headers: Sequence[tuple[str, str]] = (), *, fc_status: bool = True
    ) -> None:
        """Write status line, headers and body in one send.

        `fc_status` adds `x-fc-status`, which FC reads as the outcome of a lifecycle call
        (200 success, 404 function error). Routing errors are not function errors and go without it.
        """
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json; charset=utf-8"]
        lines.append(f"Content-Length: {len(body)}")
        if fc_status:
            lines.append(f"{HDR_FC_STATUS}: {status}")
        lines.extend(f"{k}: {v}" for k, v in headers)
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.server.answered()
        self.log_request(status, len(body))


ROUTES: dict[str, dict[str, Callable[[FcRequestHandler], None]]] = {
    "/invoke": {"POST": FcRequestHandler.handle_invoke},
    "/initialize": {"POST": FcRequestHandler.handle_initialize},
    "/pre-stop": {"GET": FcRequestHandler.handle_pre_stop},
    "/pre-freeze": {"GET": FcRequestHandler.handle_pre_freeze},
    "/health": {"GET": FcRequestHandler.handle_health},
}
# What a request through an HTTP trigger (FC marks it with x-fc-control-path /http-invoke) may reach,
# by path prefix; FC's own callers reach them too.
PUBLIC_PREFIXES: dict[str, dict[str, Callable[[FcRequestHandler], None]]] = {
    HOOKS_PREFIX: {"POST": FcRequestHandler.handle_hook},
}


def take_credentials(environ: Any) -> dict[str, str]:
    """The environment as the runtime keeps it (credentials included, in this process only), with
    the credentials removed from `environ` itself (os.environ): nothing started later inherits them."""
    kept = dict(environ)
    for name in CREDENTIAL_VARS:
        environ.pop(name, None)
    return kept


def main(argv: list[str]) -> int:
    # A stop asked for before the server exists is kept and honoured once it does.
    early: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: early.append(signal.Signals(signum).name))
    # First of all: no process of our uid may read our memory or /proc environ, and orphans of
    # builds come back to us.
    hardening = sandbox.harden_process()
    environ = take_credentials(os.environ)
    try:
        config = RuntimeConfig.from_env(environ, argv[1:])
    except ValueError as exc:
        print(f"fcbuild: {exc}", file=sys.stderr)
        return EXIT_USAGE
    known = KnownSecrets()
    configure_logging(config, known=known)
    for problem in hardening:
        logger.warning("process hardening: %s", problem)
    if sandbox.is_root():
        wanted = config.pipeline.build_uids
        try:
            first, last, _locks = sandbox.claim_uids(*wanted, explicit=config.pipeline.build_uids_given)
        except (OSError, ValueError) as exc:
            logger.error("build users: %s", exc)
            return EXIT_USAGE
        if (first, last) != wanted:
            logger.warning(
                "build uids %d-%d are another fcbuild runtime's on this host: this one takes %d-%d",
                *wanted,
                first,
                last,
            )
            pipeline = dataclasses.replace(config.pipeline, build_uids=(first, last))
            config = dataclasses.replace(config, pipeline=pipeline)
    try:
        server = FcServer(config, environ, known)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        return EXIT_STARTUP_FAILURE
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: server.signal_received(signal.Signals(signum).name))
    # A signal may land on any thread; Python runs its handler in the main thread only once that
    # thread leaves its system call. The wakeup fd makes the C-level handler wake the accept loop.
    signal.set_wakeup_fd(server.wake_fd)
    if early:
        server.signal_received(early[0])
    host, port = server.server_address[:2]
    logger.info("fcbuild %s listening on %s:%d (pid %d)", __version__, host, port, os.getpid())
    if sandbox.is_root():
        first, _ = config.pipeline.build_uids
        last = first + config.pipeline.max_builds - 1
        logger.info("builds run as their own users (uids %d-%d), %d at a time", first, last, config.pipeline.max_builds)
    else:
        logger.warning(
            "not running as root: builds run as this runtime's own user (uid %d) and can reach what it can on "
            "disk; the runtime is non-dumpable, but run it as root (FC's default) to isolate builds",
            os.getuid(),
        )
    server.start_warm_up()
    try:
        server.serve_until_stopped()
        server.graceful_stop(server.stop_reason)
        server.wait_idle(timeout=5)
        server.wait_out_signals()
    finally:
        signal.set_wakeup_fd(-1)
        # Stopping already: a later SIGTERM (FC may send one after PreStop) must not kill the
        # interpreter while it exits, when Python has put the default handlers back.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        server.server_close()
    logger.info("fcbuild exited cleanly")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv))
