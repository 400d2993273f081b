"""fcbuild's OSS client over real HTTP against the local server (which verifies signatures, CRC64, MD5)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.server
import logging
import os
import threading
import time

import oss2
import pytest

import oss_io
from context import Credentials, FcContext
from errors import AccessDenied, DownloadFailed, SourceNotFound, UploadFailed
from localoss import Faults
from settings import PipelineSettings
from tests.conftest import AK, REGION, STS, self_signed_tls

log = logging.getLogger("test")


def client(oss, account=STS, **kw):
    creds = Credentials(account.access_key_id, account.access_key_secret, account.security_token)
    kw.setdefault("retries", 6)
    return oss_io.OssClient(creds, REGION, oss.endpoint, **kw)


def raw(oss, name="site"):
    return oss2.Bucket(oss2.AuthV4(AK.access_key_id, AK.access_key_secret), oss.endpoint, name, region=REGION)


def items_of(root, prefix=""):
    from deploy_plan import content_type_for, scan_tree

    return [
        oss_io.PutItem(
            prefix + f.path, os.path.join(root, f.path), f.size, f.md5, {"Content-Type": content_type_for(f.path)}
        )
        for f in scan_tree(root)
    ]


def make_tree(root, files):
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


SITE = {
    "index.html": b"<!doctype html><script src=/assets/index-BPvgi06w.js></script>",
    "about/index.html": b"<p>about</p>",
    "assets/index-BPvgi06w.js": b"console.log(1)" * 100,
    "assets/index-DiwrgTda.css": b"body{}",
    "assets/logo.svg": b"<svg/>",
    "fonts/inter.woff2": os.urandom(3000),
    "manifest.webmanifest": b"{}",
    "app.wasm": os.urandom(2000),
    "favicon.ico": os.urandom(100),
}


def test_crcmod_c_extension_is_used():
    assert oss_io.CRC_EXTENSION, "crcmod was built without its C extension: CRC64 would be ~35x slower"


def test_client_for_request_needs_credentials_and_region():
    settings = PipelineSettings(oss_endpoint="http://127.0.0.1:1")
    with pytest.raises(AccessDenied, match="no credentials"):
        oss_io.OssClient.for_request(FcContext.from_headers({"x-fc-region": REGION}, {}), settings)
    ctx = FcContext.from_headers({"x-fc-access-key-id": "a", "x-fc-access-key-secret": "b"}, {})
    with pytest.raises(Exception, match="region"):
        oss_io.OssClient.for_request(ctx, settings)


def test_default_endpoint_is_internal():
    ctx = FcContext.from_headers({"x-fc-region": "cn-shanghai", "x-fc-access-key-id": "a"}, {})
    c = oss_io.OssClient.for_request(ctx, PipelineSettings())
    assert c.endpoint == "https://oss-cn-shanghai-internal.aliyuncs.com"


def test_large_file_multipart_is_byte_exact(local_oss, tmp_path):
    root = str(tmp_path / "out")
    data = os.urandom(50 * 1024 * 1024 + 123)
    make_tree(root, {"big.bin": data, "small.txt": b"x"})
    c = client(local_oss, part_size=8 * 2**20, multipart_threshold=16 * 2**20)
    etags = c.put_files("site", items_of(root))
    assert etags["big.bin"].endswith("-7") and etags["small.txt"] == hashlib.md5(b"x").hexdigest().upper()
    assert local_oss.server.counts["upload_part"] == 7
    got = raw(local_oss).get_object("big.bin")
    assert hashlib.sha256(got.read()).digest() == hashlib.sha256(data).digest()
    assert got.headers["x-oss-object-type"] == "Multipart"
    dest = str(tmp_path / "back.bin")
    assert c.download_file("site", "big.bin", dest) == len(data)
    with open(dest, "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()


def test_upload_survives_injected_errors_and_resets(local_oss, tmp_path):
    root = str(tmp_path / "out")
    files = {f"assets/chunk-{i:03d}.js": os.urandom(20_000) for i in range(120)}
    files["big.bin"] = os.urandom(3 * 1024 * 1024)
    make_tree(root, files)
    local_oss.server.faults = Faults(error_rate=0.15, reset_rate=0.15, seed=7)
    c = client(local_oss, multipart_threshold=1024 * 1024, part_size=512 * 1024, retries=10)
    c.put_files("site", items_of(root))
    local_oss.server.faults = Faults()
    assert c.retry_count > 10
    b = raw(local_oss)
    for rel, data in files.items():
        assert b.get_object(rel).read() == data, rel


def test_download_resumes_after_resets_and_detects_corruption(local_oss, tmp_path):
    data = os.urandom(4 * 1024 * 1024)
    raw(local_oss, "src").put_object("archive.tgz", data)
    local_oss.server.faults = Faults(reset_rate=0.3, corrupt_rate=0.2, only=frozenset({"get_object"}), seed=3)
    dest = str(tmp_path / "a.tgz")
    assert client(local_oss).download_file("src", "archive.tgz", dest) == len(data)
    with open(dest, "rb") as f:
        assert f.read() == data


def test_missing_object_is_source_not_found(local_oss, tmp_path):
    with pytest.raises(SourceNotFound) as err:
        client(local_oss).download_file("src", "nope/app.tar.gz", str(tmp_path / "x"))
    message = str(err.value)
    assert message.startswith("oss://src/nope/app.tar.gz (NoSuchKey, request id ")


def test_wrong_secret_is_access_denied_without_leaking(local_oss, tmp_path):
    bad = type(STS)(STS.access_key_id, "not-the-secret-xyz", STS.security_token)
    with pytest.raises(AccessDenied) as err:
        client(bad and local_oss, account=bad).download_file("src", "k", str(tmp_path / "x"))
    assert "SignatureDoesNotMatch" in str(err.value)
    for secret in ("not-the-secret-xyz", STS.security_token):
        assert secret not in str(err.value)
    with pytest.raises(AccessDenied):
        client(local_oss, account=bad).put_json("site", "k.json", {})


def test_upload_to_missing_bucket_is_upload_failed(local_oss, tmp_path):
    root = str(tmp_path / "out")
    make_tree(root, {"index.html": b"x"})
    with pytest.raises(UploadFailed, match="NoSuchBucket") as err:
        client(local_oss).put_files("no-such-bucket", items_of(root))
    assert isinstance(err.value, oss_io.PartialTransfer) and err.value.started == {"index.html"}


def test_json_documents(local_oss):
    c = client(local_oss)
    assert c.get_json("site", "meta/manifest.json") is None
    c.put_json("site", "meta/manifest.json", {"files": {"a": 1}, "name": "é"})
    assert c.get_json("site", "meta/manifest.json") == {"files": {"a": 1}, "name": "é"}


def test_list_and_batch_delete_over_1000(local_oss):
    c = client(local_oss, retries=2)
    keys = [f"many/{i:05d}" for i in range(1005)]
    for k in keys:
        c.put_bytes("site", k, b"", content_type="text/plain")
    c.put_bytes("site", "other/keep", b"", content_type="text/plain")
    assert [o.key for o in c.list_objects("site", "many/")] == keys
    assert c.delete_objects("site", keys) == 1005
    assert local_oss.server.counts["delete_multiple"] == 2
    assert [o.key for o in c.list_objects("site")] == ["other/keep"]


def test_oss2_client_side_encryption_is_not_loaded():
    """In a clean interpreter: importing oss_io keeps oss2's encryption stack out, and using it fails loudly."""
    import subprocess
    import sys

    code = """
import sys, oss_io, oss2, oss2.resumable
heavy = ('aliyunsdkcore', 'aliyunsdkkms', 'cryptography', 'Crypto.Cipher.AES', 'cffi')
print([m for m in heavy if m in sys.modules])
for use in (lambda: oss2.utils.random_key(32), lambda: oss2.CryptoBucket(None, '', '', None)):
    try:
        use()
    except NotImplementedError as exc:
        print(exc)
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.splitlines() == ["[]"] + ["oss2 client-side encryption is not loaded in fcbuild"] * 2


def test_retries_are_counted_against_progress(local_oss, tmp_path):
    """Each GET is cut after 1 MiB more arrived, seven times in a row: more drops than retries
    (5), yet every try got further, so the download finishes. Cut before any byte, it gives up."""
    from localoss import FaultRule

    data = os.urandom(8 * 1024 * 1024)
    raw(local_oss, "src").put_object("big.tgz", data)
    rule = local_oss.server.faults.add(
        FaultRule("GET", "big.tgz", operation="get_object", count=7, reset_after=1 << 20)
    )
    dest = str(tmp_path / "big.tgz")
    assert client(local_oss, retries=5).download_file("src", "big.tgz", dest) == len(data)
    assert rule.matched == 8
    with open(dest, "rb") as f:
        assert f.read() == data
    local_oss.server.faults.clear()
    stuck = local_oss.server.faults.add(FaultRule("GET", "big.tgz", operation="get_object", count=None, reset_after=0))
    with pytest.raises(DownloadFailed):
        client(local_oss, retries=3).download_file("src", "big.tgz", dest)
    assert stuck.matched == 4  # the first try and 3 retries, none of which got a byte further


def test_no_retry_starts_past_the_deadline(local_oss, tmp_path):
    import time

    from localoss import FaultRule

    raw(local_oss, "src").put_object("slow.tgz", b"x" * 100)
    rule = local_oss.server.faults.add(FaultRule("GET", "slow.tgz", count=None, status=503))
    c = client(local_oss, retries=50)
    c.deadline = time.monotonic() + 1.5
    started = time.monotonic()
    with pytest.raises(DownloadFailed):
        c.download_file("src", "slow.tgz", str(tmp_path / "s"))
    assert time.monotonic() - started < 10 and rule.matched < 50


def test_create_if_absent_and_server_side_copy(local_oss):
    c = client(local_oss)
    assert c.put_json_if_absent("site", "lease/000.json", {"n": 1}) is True
    assert c.put_json_if_absent("site", "lease/000.json", {"n": 2}) is False
    assert c.get_json("site", "lease/000.json") == {"n": 1}
    assert raw(local_oss).get_object_acl("lease/000.json").acl == "private"
    c.put_bytes("site", "live/a.css", b"body{}", content_type="text/css", cache_control="no-cache")
    c.copy_object("site", "live/a.css", "store/a.css", acl="private")
    got = raw(local_oss).get_object("store/a.css")
    assert got.read() == b"body{}" and got.headers["Content-Type"] == "text/css"
    assert got.etag == raw(local_oss).head_object("live/a.css").etag
    assert raw(local_oss).get_object_acl("store/a.css").acl == "private"
    with pytest.raises(SourceNotFound):
        c.copy_object("site", "live/none.css", "store/none.css")


def _run_requests(gate, count, work):  # type: ignore[no-untyped-def]
    def one(_):  # type: ignore[no-untyped-def]
        with gate:
            work()

    with concurrent.futures.ThreadPoolExecutor(gate.ceiling) as pool:
        list(pool.map(one, range(count)))


def test_concurrency_rises_while_requests_wait_on_the_network():
    gate = oss_io.Concurrency(16, 64)
    _run_requests(gate, 1500, lambda: time.sleep(0.02))  # each request waits 20 ms: latency-bound
    assert gate.limit == 64


def test_concurrency_stays_when_more_in_flight_gets_no_more_done():
    gate = oss_io.Concurrency(16, 64)
    one_at_a_time = threading.Lock()

    def serialised():  # type: ignore[no-untyped-def]
        with one_at_a_time:  # the link (or the CPU) takes one request at a time
            time.sleep(0.001)

    _run_requests(gate, 600, serialised)
    assert gate.limit < 64


class _RecordingProxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that answers PUTs itself, as OSS would, and keeps what it was sent."""

    seen: list[tuple[str, dict[str, str]]] = []

    def do_PUT(self):  # type: ignore[no-untyped-def]
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(200)
        self.send_header("ETag", '"ABC"')
        self.send_header("x-oss-request-id", "proxy")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # type: ignore[no-untyped-def]
        pass


@pytest.fixture
def recording_proxy():  # type: ignore[no-untyped-def]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _RecordingProxy.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}", _RecordingProxy.seen
    server.shutdown()
    server.server_close()


def test_requests_go_through_the_environment_proxy_with_oss2_headers(recording_proxy, monkeypatch):
    proxy, seen = recording_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "other.example")
    creds = Credentials(STS.access_key_id, STS.access_key_secret, STS.security_token)
    c = oss_io.OssClient(creds, REGION, "http://oss-cn-hangzhou-internal.aliyuncs.com")
    c.put_json("site", "a.json", {"a": 1})
    ((path, headers),) = seen
    assert path == "http://site.oss-cn-hangzhou-internal.aliyuncs.com/a.json"  # absolute form: a proxy's
    assert headers["user-agent"].startswith("aliyun-sdk-python/")
    assert headers["authorization"].startswith("OSS4-HMAC-SHA256 ")
    assert headers["x-oss-security-token"] == STS.security_token
    assert "gzip" not in headers.get("accept-encoding", "")  # oss2 asks for no compressed answers
    assert "cookie" not in headers


def test_no_proxy_covering_the_endpoint_sends_directly(recording_proxy, local_oss, monkeypatch):
    proxy, seen = recording_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    c = client(local_oss)
    c.put_json("site", "direct.json", {"a": 1})
    assert c.get_json("site", "direct.json") == {"a": 1}
    assert seen == []


def test_an_endpoint_whose_certificate_does_not_verify_gets_nothing(recording_proxy, tmp_path):
    """TLS is verified (against certifi's CAs): a self-signed endpoint never sees a request, so never the
    STS token either."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingProxy)
    server.socket = self_signed_tls(tmp_path).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _, seen = recording_proxy  # the handler's record, emptied by the fixture
    try:
        creds = Credentials(STS.access_key_id, STS.access_key_secret, STS.security_token)
        c = oss_io.OssClient(creds, REGION, f"https://127.0.0.1:{server.server_address[1]}", retries=1)
        with pytest.raises(UploadFailed) as failed:
            c.put_json("site", "a.json", {"a": 1})
    finally:
        server.shutdown()
        server.server_close()
    assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value)
    assert STS.security_token not in str(failed.value) and STS.access_key_secret not in str(failed.value)
    assert seen == []
