"""The local OSS-compatible server, driven by the real oss2 client over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import urllib.error
import urllib.request

import oss2
import pytest
from oss2.credentials import StaticCredentialsProvider
from oss2.models import PartInfo

from localoss import Faults, crc64, crc64_combine
from tests.conftest import AK, REGION, STS

AUTHS = {
    "v1": lambda: oss2.Auth(AK.access_key_id, AK.access_key_secret),
    "v4": lambda: oss2.AuthV4(AK.access_key_id, AK.access_key_secret),
    "provider-v4": lambda: oss2.ProviderAuthV4(StaticCredentialsProvider(AK.access_key_id, AK.access_key_secret)),
    "sts-v1": lambda: oss2.StsAuth(STS.access_key_id, STS.access_key_secret, STS.security_token),
    "sts-v4": lambda: oss2.StsAuth(STS.access_key_id, STS.access_key_secret, STS.security_token, auth_version="v4"),
}
AWKWARD_KEYS = ["dir/a b+c%~é.txt", "deep/" * 20 + "leaf", "plus+plus", "百度/文件.js", "q?x=1&y#frag", "sp ace/"[:-1]]


def bucket(oss, auth="v4", name="src"):
    return oss2.Bucket(AUTHS[auth](), oss.endpoint, name, region=REGION)


class TestCrc64:
    def test_check_value(self):
        assert crc64(b"123456789") == 0x995DC9BBDF1939FA

    @pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 63, 64, 65, 1000, 65537])
    def test_continuation_and_combine(self, n):
        data = os.urandom(n)
        cut = n // 3
        whole = crc64(data)
        assert crc64(data[cut:], crc64(data[:cut])) == whole
        assert crc64_combine(crc64(data[:cut]), crc64(data[cut:]), n - cut) == whole

    @pytest.mark.parametrize("n", [20_000, 100_000, 300_000])  # the last folds past 1 Mbit, then below it
    def test_agrees_with_an_independent_implementation(self, n):
        data = os.urandom(n)
        reference = oss2.utils.Crc64()
        reference.update(data)
        assert crc64(data) == reference.crc


@pytest.mark.parametrize("auth", list(AUTHS))
def test_every_operation(local_oss, auth):
    b = bucket(local_oss, auth)
    body = os.urandom(300_000)
    headers = {"Content-Type": "text/plain", "Cache-Control": "no-cache", "x-oss-meta-team": "web"}
    put = b.put_object("obj/one", body, headers=headers)
    assert put.etag == hashlib.md5(body).hexdigest().upper()
    assert put.crc == crc64(body)
    assert b.get_object("obj/one").read() == body
    head = b.head_object("obj/one")
    assert head.headers["Content-Type"] == "text/plain"
    assert head.headers["Cache-Control"] == "no-cache"
    assert head.headers["x-oss-meta-team"] == "web"
    assert head.content_length == len(body)
    assert b.get_object_meta("obj/one").content_length == len(body)
    assert b.get_object("obj/one", byte_range=(10, 19)).read() == body[10:20]
    b.copy_object("src", "obj/one", "obj/two")
    assert b.head_object("obj/two").headers["Cache-Control"] == "no-cache"
    assert [o.key for o in oss2.ObjectIterator(b, prefix="obj/", max_keys=1)] == ["obj/one", "obj/two"]
    assert [o.key for o in oss2.ObjectIteratorV2(b, prefix="obj/", max_keys=1)] == ["obj/one", "obj/two"]
    # multipart, with oss2 checking the combined CRC against the Complete answer
    upload_id = b.init_multipart_upload("obj/big", headers={"Content-Type": "application/wasm"}).upload_id
    parts_data = [os.urandom(100 * 1024), os.urandom(100 * 1024), b"tail"]
    infos = []
    for n, data in enumerate(parts_data, 1):
        r = b.upload_part("obj/big", upload_id, n, data)
        assert r.crc == crc64(data)
        infos.append(PartInfo(n, r.etag, size=len(data), part_crc=r.crc))
    assert [p.part_number for p in b.list_parts("obj/big", upload_id).parts] == [1, 2, 3]
    b.complete_multipart_upload("obj/big", upload_id, infos)
    got = b.get_object("obj/big")
    assert got.read() == b"".join(parts_data)
    assert got.headers["Content-Type"] == "application/wasm"
    assert got.headers["x-oss-object-type"] == "Multipart"
    b.delete_object("obj/two")
    assert not b.object_exists("obj/two")
    result = b.batch_delete_objects(["obj/one", "obj/big"])
    assert sorted(result.deleted_keys) == ["obj/big", "obj/one"]
    assert list(oss2.ObjectIteratorV2(b, prefix="obj/")) == []


class TestAuthentication:
    def test_wrong_secret(self, local_oss):
        for auth in (oss2.Auth(AK.access_key_id, "nope"), oss2.AuthV4(AK.access_key_id, "nope")):
            with pytest.raises(oss2.exceptions.SignatureDoesNotMatch):
                oss2.Bucket(auth, local_oss.endpoint, "src", region=REGION).put_object("k", b"x")

    def test_unknown_key(self, local_oss):
        with pytest.raises(oss2.exceptions.ServerError) as err:
            oss2.Bucket(oss2.AuthV4("nobody", "x"), local_oss.endpoint, "src", region=REGION).get_object("k")
        assert (err.value.status, err.value.code) == (403, "InvalidAccessKeyId")

    def test_sts_token_must_match(self, local_oss):
        for token, code, ec in (
            ("wrong-token", "InvalidSecurityToken", "0002-00000012"),
            ("", "InvalidAccessKeyId", "0002-00000003"),  # an STS key sent without its token
        ):
            auth = oss2.StsAuth(STS.access_key_id, STS.access_key_secret, token, auth_version="v4")
            with pytest.raises(oss2.exceptions.ServerError) as err:
                oss2.Bucket(auth, local_oss.endpoint, "src", region=REGION).get_object("k")
            assert (err.value.code, err.value.ec) == (code, ec)

    def test_content_md5_malformed_and_mismatched_have_their_own_ec(self, local_oss):
        b = bucket(local_oss)
        for md5, ec in (("not-base64!", "0017-00000502"), (base64.b64encode(b"0" * 16).decode(), "0017-00000503")):
            with pytest.raises(oss2.exceptions.ServerError) as err:
                b.put_object("k", b"data", headers={"Content-MD5": md5})
            assert (err.value.code, err.value.ec) == ("InvalidDigest", ec)

    def test_clock_skew(self, local_oss):
        local_oss.server.verifier.now = lambda: time.time() + 3600
        for auth in ("v1", "v4"):
            with pytest.raises(oss2.exceptions.ServerError) as err:
                bucket(local_oss, auth).get_object("k")
            assert (err.value.status, err.value.code) == (403, "RequestTimeTooSkewed")

    def test_wrong_region_for_v4(self, local_oss):
        b = oss2.Bucket(AUTHS["v4"](), local_oss.endpoint, "src", region="cn-beijing")
        with pytest.raises(oss2.exceptions.ServerError) as err:
            b.get_object("k")
        assert err.value.code == "InvalidArgument"

    def test_anonymous_access_denied(self, local_oss):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{local_oss.endpoint}/src/k")
        assert err.value.code == 403 and b"<Code>AccessDenied</Code>" in err.value.read()

    def test_head_error_carries_code_in_x_oss_err(self, local_oss):
        with pytest.raises(oss2.exceptions.NoSuchKey):
            bucket(local_oss).head_object("missing")
        with pytest.raises(oss2.exceptions.NoSuchBucket):
            bucket(local_oss, name="no-such-bucket").head_object("missing")


class TestIntegrity:
    def test_wrong_content_md5(self, local_oss):
        wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        with pytest.raises(oss2.exceptions.InvalidDigest):
            bucket(local_oss).put_object("k", b"data", headers={"Content-MD5": wrong})
        assert not bucket(local_oss).object_exists("k")

    def test_corrupted_upload_fails_oss2_crc_check(self, local_oss):
        local_oss.server.faults = Faults(corrupt_rate=1.0, only=frozenset({"put_object"}))
        with pytest.raises(oss2.exceptions.InconsistentError):
            bucket(local_oss).put_object("k", os.urandom(5000))

    def test_corrupted_download_fails_oss2_crc_check(self, local_oss, tmp_path):
        bucket(local_oss).put_object("k", os.urandom(5000))
        local_oss.server.faults = Faults(corrupt_rate=1.0, only=frozenset({"get_object"}))
        with pytest.raises(oss2.exceptions.InconsistentError):
            bucket(local_oss).get_object_to_file("k", str(tmp_path / "out"))

    def test_etag_rules(self, local_oss):
        b = bucket(local_oss)
        b.put_object("k", b"abc")
        listed = next(iter(oss2.ObjectIteratorV2(b)))
        assert listed.etag == hashlib.md5(b"abc").hexdigest().upper()


@pytest.mark.parametrize("key", AWKWARD_KEYS)
@pytest.mark.parametrize("auth", ["v1", "v4"])
def test_awkward_keys_round_trip(local_oss, key, auth):
    b = bucket(local_oss, auth)
    b.put_object(key, key.encode())
    assert b.get_object(key).read() == key.encode()
    assert [o.key for o in oss2.ObjectIteratorV2(b)] == [key]
    assert [o.key for o in oss2.ObjectIterator(b)] == [key]
    b.batch_delete_objects([key])
    assert not b.object_exists(key)


def test_listing_with_delimiter_and_paging(local_oss):
    b = bucket(local_oss)
    keys = ["a/1", "a/2", "b/x/1", "b/y", "c", "d/1"]
    for k in keys:
        b.put_object(k, b"")
    for iterator in (oss2.ObjectIterator, oss2.ObjectIteratorV2):
        found = [(o.key, o.is_prefix()) for o in iterator(b, delimiter="/", max_keys=1)]
        assert found == [("a/", True), ("b/", True), ("c", False), ("d/", True)]
        found = [o.key for o in iterator(b, prefix="b/", delimiter="/", max_keys=1)]
        assert found == ["b/x/", "b/y"]
        assert [o.key for o in iterator(b, max_keys=2)] == keys


class TestRanges:
    def test_suffix_and_open_ranges(self, local_oss):
        b = bucket(local_oss)
        b.put_object("k", bytes(range(100)))
        assert b.get_object("k", byte_range=(90, None)).read() == bytes(range(90, 100))
        assert b.get_object("k", byte_range=(None, 5)).read() == bytes(range(95, 100))

    def test_out_of_range_is_ignored_unless_standard(self, local_oss):
        b = bucket(local_oss)
        b.put_object("k", b"0123456789")
        assert b.get_object("k", byte_range=(50, 60)).read() == b"0123456789"
        with pytest.raises(oss2.exceptions.ServerError) as err:
            b.get_object("k", byte_range=(50, 60), headers={"x-oss-range-behavior": "standard"})
        assert (err.value.status, err.value.code) == (416, "InvalidRange")

    def test_if_match(self, local_oss):
        b = bucket(local_oss)
        etag = b.put_object("k", b"v1").etag
        assert b.get_object("k", headers={"If-Match": f'"{etag}"'}).read() == b"v1"
        with pytest.raises(oss2.exceptions.PreconditionFailed):
            b.get_object("k", headers={"If-Match": '"00000000000000000000000000000000"'})


class TestMultipartRules:
    def _parts(self, b, key, sizes):
        upload_id = b.init_multipart_upload(key).upload_id
        infos = []
        for n, size in enumerate(sizes, 1):
            r = b.upload_part(key, upload_id, n, os.urandom(size))
            infos.append(PartInfo(n, r.etag, size=size, part_crc=r.crc))
        return upload_id, infos

    def test_small_part_is_refused(self, local_oss):
        b = bucket(local_oss)
        upload_id, infos = self._parts(b, "k", [1000, 1000])
        with pytest.raises(oss2.exceptions.ServerError) as err:
            b.complete_multipart_upload("k", upload_id, infos)
        assert err.value.code == "EntityTooSmall"

    def test_wrong_etag_is_refused(self, local_oss):
        b = bucket(local_oss)
        upload_id, infos = self._parts(b, "k", [1000])
        infos[0] = PartInfo(1, "0" * 32, size=1000)
        with pytest.raises(oss2.exceptions.ServerError) as err:
            b.complete_multipart_upload("k", upload_id, infos)
        assert err.value.code == "InvalidPart"

    def test_order_is_checked(self, local_oss):
        b = bucket(local_oss)
        upload_id, infos = self._parts(b, "k", [200_000, 1000])
        body = (
            "<CompleteMultipartUpload>"
            + "".join(
                f'<Part><PartNumber>{p.part_number}</PartNumber><ETag>"{p.etag}"</ETag></Part>' for p in infos[::-1]
            )
            + "</CompleteMultipartUpload>"
        )
        with pytest.raises(oss2.exceptions.ServerError) as err:
            b._Bucket__do_object(
                "POST", "k", data=body.encode(), params={"uploadId": upload_id}
            )  # oss2 sorts parts itself
        assert err.value.code == "InvalidPartOrder"

    def test_abort(self, local_oss):
        b = bucket(local_oss)
        upload_id, infos = self._parts(b, "k", [1000])
        b.abort_multipart_upload("k", upload_id)
        with pytest.raises(oss2.exceptions.NoSuchUpload):
            b.complete_multipart_upload("k", upload_id, infos)


def test_website_path_serves_index_documents(local_oss):
    b = bucket(local_oss, name="site")
    b.put_object("app/index.html", b"<h1>hi</h1>", headers={"Content-Type": "text/html; charset=utf-8"})
    b.put_object("app/docs/index.html", b"docs", headers={"Content-Type": "text/html"})
    with urllib.request.urlopen(local_oss.site_url("site", "app/")) as resp:
        assert resp.read() == b"<h1>hi</h1>"
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    with urllib.request.urlopen(local_oss.site_url("site", "app/docs")) as resp:  # redirected to docs/
        assert resp.read() == b"docs"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(local_oss.site_url("site", "app/missing.js"))
    assert err.value.code == 404


def test_objects_survive_a_restart(tmp_path):
    from localoss import LocalOss

    root = str(tmp_path / "oss")
    with LocalOss(root, buckets=["src"], accounts=[AK]) as oss:
        bucket(oss).put_object("kept", b"data")
    with LocalOss(root, accounts=[AK]) as oss:
        assert bucket(oss).get_object("kept").read() == b"data"


def test_object_acl_private_objects_are_not_served_to_the_website(local_oss):
    b = bucket(local_oss, name="site")
    b.put_object("pub.html", b"public")
    b.put_object("meta.json", b"{}", headers={"x-oss-object-acl": "private"})
    assert b.get_object_acl("meta.json").acl == "private"
    assert b.get_object_acl("pub.html").acl == "default"
    assert b.get_object("meta.json").read() == b"{}"  # the owner still reads it, signed
    with urllib.request.urlopen(local_oss.site_url("site", "pub.html")) as page:
        assert page.read() == b"public"
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(local_oss.site_url("site", "meta.json"))
    assert denied.value.code == 403 and b"<Code>AccessDenied</Code>" in denied.value.read()
    b.put_object_acl("pub.html", oss2.OBJECT_ACL_PRIVATE)
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(local_oss.site_url("site", "pub.html"))
    with pytest.raises(oss2.exceptions.OssError) as bad:
        b.put_object("x", b"x", headers={"x-oss-object-acl": "secret"})
    assert bad.value.status == 400 and bad.value.code == "InvalidArgument"
    up = b.init_multipart_upload("big", headers={"x-oss-object-acl": "private"})
    part = b.upload_part("big", up.upload_id, 1, b"x" * 10)
    b.complete_multipart_upload("big", up.upload_id, [PartInfo(1, part.etag)])
    assert b.get_object_acl("big").acl == "private"


def test_fault_rules_hit_exactly_the_requests_they_name(local_oss):
    from localoss import FaultRule

    b = bucket(local_oss)
    faults = local_oss.server.faults
    every_index = faults.add(FaultRule.parse("PUT */index.html count=all status=503"))
    for _ in range(3):
        with pytest.raises(oss2.exceptions.ServerError) as err:
            b.put_object("site/index.html", b"<p>")
        assert err.value.status == 503
    b.put_object("site/app.js", b"ok")  # another key: untouched
    assert every_index.matched == 3
    faults.clear()
    third = faults.add(FaultRule.parse("* * skip=2 count=1 status=500"))
    outcomes = []
    for i in range(5):
        try:
            b.put_object(f"n/{i}", b"x")
            outcomes.append("ok")
        except oss2.exceptions.ServerError as exc:
            outcomes.append(exc.status)
    assert outcomes == ["ok", "ok", 500, "ok", "ok"] and third.matched == 5
    faults.clear()
    faults.add(FaultRule.parse("GET big op=get_object reset-after=1000"))
    b.put_object("big", b"y" * 5000)
    with pytest.raises(Exception):  # noqa: B017 (the connection is cut after 1000 bytes)
        b.get_object("big").read()
    assert b.get_object("big").read() == b"y" * 5000  # count=1: the next one is whole
    for bad in ("PUT", "PUT * bogus=1", "PUT *"):
        with pytest.raises(ValueError):
            FaultRule.parse(bad)


def _v1_request(oss, method, host, path, *, body=b"", resource=None, headers=None):
    """A raw request signed with OSS's V1 scheme, computed here, to any Host header."""
    import email.utils
    import hmac
    import http.client

    date = email.utils.formatdate(usegmt=True)
    headers = {"Date": date, "Host": host, **(headers or {})}
    content_type = headers.get("Content-Type", "")
    to_sign = f"{method}\n\n{content_type}\n{date}\n{resource or path}"
    mac = hmac.new(AK.access_key_secret.encode(), to_sign.encode(), hashlib.sha1).digest()
    headers["Authorization"] = f"OSS {AK.access_key_id}:{base64.b64encode(mac).decode()}"
    conn = http.client.HTTPConnection("127.0.0.1", int(oss.endpoint.rsplit(":", 1)[1]), timeout=30)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def test_bucket_names_are_checked_and_nothing_reaches_outside_the_root(tmp_path):
    from localoss import LocalOss

    root = tmp_path / "root"
    neighbour = tmp_path / "escape"
    neighbour.mkdir()
    (neighbour / "keep.txt").write_text("not the server's")
    with LocalOss(str(root), buckets=["src"], accounts=[AK], region=REGION) as oss:
        port = oss.endpoint.rsplit(":", 1)[1]
        for name in ("..%2Fescape", "%2e%2e", "Upper_Case", "-dash", "ab"):
            status, _, body = _v1_request(oss, "PUT", f"127.0.0.1:{port}", f"/{name}", resource=f"/{name}/")
            assert status == 400 and b"InvalidBucketName" in body, (name, body)
            status, _, body = _v1_request(oss, "DELETE", f"127.0.0.1:{port}", f"/{name}", resource=f"/{name}/")
            assert status == 400, (name, body)
        status, _, body = _v1_request(
            oss, "PUT", f"127.0.0.1:{port}", "/..%2Fescape/k", body=b"x", resource="/../escape/k"
        )
        assert status == 400
    assert (neighbour / "keep.txt").read_text() == "not the server's" and sorted(os.listdir(neighbour)) == ["keep.txt"]
    assert sorted(os.listdir(root)) == ["src"]


def test_virtual_hosted_style_addressing(tmp_path):
    from localoss import LocalOss

    with LocalOss(str(tmp_path / "r"), buckets=["src"], accounts=[AK], region=REGION, domain="oss.test") as oss:
        port = oss.endpoint.rsplit(":", 1)[1]
        status, _, _ = _v1_request(
            oss, "PUT", f"src.oss.test:{port}", "/dir/a.txt", body=b"hello", resource="/src/dir/a.txt"
        )
        assert status == 200
        assert bucket(oss).get_object("dir/a.txt").read() == b"hello"  # path-style sees it
        status, _, body = _v1_request(oss, "GET", f"src.oss.test:{port}", "/dir/a.txt", resource="/src/dir/a.txt")
        assert (status, body) == (200, b"hello")


def test_object_names_follow_osss_rules(local_oss):
    b = bucket(local_oss)
    b.put_object("a\\b.txt", b"inner backslash is allowed")
    assert b.get_object("a\\b.txt").read() == b"inner backslash is allowed"
    for bad in ("\\lead", "nul\x00byte", "x" * 1024):
        with pytest.raises(oss2.exceptions.OssError) as err:
            b.put_object(bad, b"x")
        assert err.value.code == "InvalidObjectName", bad


def test_create_if_absent_on_every_write_path(local_oss):
    b = bucket(local_oss)
    b.put_object("exists", b"first")
    forbid = {"x-oss-forbid-overwrite": "true"}
    with pytest.raises(oss2.exceptions.OssError) as err:
        b.put_object("exists", b"second", headers=forbid)
    assert err.value.status == 409 and err.value.code == "FileAlreadyExists"
    b.put_object("other", b"other")
    with pytest.raises(oss2.exceptions.OssError) as err:
        b.copy_object("src", "other", "exists", headers=forbid)
    assert err.value.code == "FileAlreadyExists"
    up = b.init_multipart_upload("exists")
    part = b.upload_part("exists", up.upload_id, 1, b"z" * 10)
    with pytest.raises(oss2.exceptions.OssError) as err:
        b.complete_multipart_upload("exists", up.upload_id, [PartInfo(1, part.etag)], headers=forbid)
    assert err.value.code == "FileAlreadyExists"
    assert b.get_object("exists").read() == b"first"
    b.copy_object("src", "other", "fresh", headers=forbid)  # absent: created
    assert b.get_object("fresh").read() == b"other"


def test_not_modified_has_no_body_and_if_modified_since_is_honoured(local_oss):
    b = bucket(local_oss)
    b.put_object("page.html", b"<p>")
    etag = b.head_object("page.html").etag
    port = local_oss.endpoint.rsplit(":", 1)[1]
    status, headers, body = _v1_request(
        local_oss,
        "GET",
        f"127.0.0.1:{port}",
        "/src/page.html",
        headers={"If-None-Match": f'"{etag}"'},
        resource="/src/page.html",
    )
    assert (status, body) == (304, b"") and headers["etag"].strip('"') == etag and "content-length" not in headers
    later = email_date(time.time() + 60)
    status, _, body = _v1_request(
        local_oss,
        "GET",
        f"127.0.0.1:{port}",
        "/src/page.html",
        headers={"If-Modified-Since": later},
        resource="/src/page.html",
    )
    assert (status, body) == (304, b"")
    earlier = email_date(time.time() - 3600)
    status, _, body = _v1_request(
        local_oss,
        "GET",
        f"127.0.0.1:{port}",
        "/src/page.html",
        headers={"If-Modified-Since": earlier},
        resource="/src/page.html",
    )
    assert (status, body) == (200, b"<p>")


def email_date(ts):
    import email.utils

    return email.utils.formatdate(ts, usegmt=True)


def test_a_website_like_production(tmp_path):
    """A prefix served at / as its CDN domain would, with the bucket's website configuration: the
    index document, a folder redirected to its slash, the error document as a single-page app uses
    it (200), a private object refused; and what another process writes is seen at once."""
    from localoss import LocalOss, Website

    root = str(tmp_path / "r")
    with LocalOss(root, buckets=["site"], accounts=[AK], region=REGION) as writer:
        b = bucket(writer, name="site")
        b.put_object("app/index.html", b"<div id=app></div>", headers={"Content-Type": "text/html"})
        b.put_object("app/docs/index.html", b"docs")
        b.put_object("app/.fcbuild/manifest.json", b"{}", headers={"x-oss-object-acl": "private"})
        b.put_bucket_website(oss2.models.BucketWebsite("index.html", "index.html"))
        assert b.get_bucket_website().index_file == "index.html"
        site = Website.parse("site/app", error_status=200)
        with LocalOss(root, accounts=[AK], region=REGION, website=site) as preview:

            def get(path):
                try:
                    with urllib.request.urlopen(preview.endpoint + path) as resp:
                        return resp.status, resp.read()
                except urllib.error.HTTPError as err:
                    return err.code, err.read()

            assert get("/") == (200, b"<div id=app></div>")
            assert get("/docs/") == (200, b"docs")
            assert get("/orders/42") == (200, b"<div id=app></div>")  # a history-mode deep link
            assert get("/.fcbuild/manifest.json")[0] == 403
            b.put_object("app/index.html", b"<div id=app>v2</div>")  # written through the other server
            assert get("/") == (200, b"<div id=app>v2</div>")
            signed = bucket(preview, name="site")  # signed requests still reach the API
            assert signed.get_object("app/docs/index.html").read() == b"docs"


@pytest.mark.parametrize("auth", ["v1", "v4", "sts-v1", "sts-v4"])
def test_presigned_urls_work_until_they_expire(local_oss, auth):
    b = bucket(local_oss, auth)
    b.put_object("shared/report.pdf", b"%PDF")
    url = b.sign_url("GET", "shared/report.pdf", 60)
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == b"%PDF"
    put_url = b.sign_url("PUT", "shared/upload.txt", 60, headers={"Content-Type": "text/plain"})
    req = urllib.request.Request(put_url, data=b"uploaded", method="PUT", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
    assert b.get_object("shared/upload.txt").read() == b"uploaded"
    other_type = urllib.request.Request(put_url, data=b"x", method="PUT", headers={"Content-Type": "text/html"})
    with pytest.raises(urllib.error.HTTPError) as err:  # the signature covers the Content-Type
        urllib.request.urlopen(other_type)
    assert err.value.code == 403
    tampered = url.replace("report.pdf", "report.pdX")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(tampered)
    assert err.value.code == 403
    local_oss.server.verifier.now = lambda: time.time() + 3600  # an hour later
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url)
        assert err.value.code == 403 and b"expired" in err.value.read()
    finally:
        local_oss.server.verifier.now = time.time


def test_list_multipart_uploads_and_upload_part_copy(local_oss):
    b = bucket(local_oss)
    source = os.urandom(300 * 1024)
    b.put_object("src.bin", source)
    first = b.init_multipart_upload("copies/a.bin")
    second = b.init_multipart_upload("copies/b.bin")
    listed = b.list_multipart_uploads(prefix="copies/")
    assert [(u.key, u.upload_id) for u in listed.upload_list] == sorted(
        [("copies/a.bin", first.upload_id), ("copies/b.bin", second.upload_id)]
    )
    p1 = b.upload_part_copy("src", "src.bin", (0, 200 * 1024 - 1), "copies/a.bin", first.upload_id, 1)
    p2 = b.upload_part_copy("src", "src.bin", (200 * 1024, len(source) - 1), "copies/a.bin", first.upload_id, 2)
    b.complete_multipart_upload("copies/a.bin", first.upload_id, [PartInfo(1, p1.etag), PartInfo(2, p2.etag)])
    assert b.get_object("copies/a.bin").read() == source
    b.abort_multipart_upload("copies/b.bin", second.upload_id)
    assert not b.list_multipart_uploads(prefix="copies/").upload_list
