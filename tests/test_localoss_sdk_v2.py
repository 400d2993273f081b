"""The local OSS server held against a second official client: alibabacloud-oss-v2, whose V4 signing,
CRC64 checks and XML parsing share nothing with oss2's (or the server's)."""

from __future__ import annotations

import hashlib
import os
import urllib.request

import alibabacloud_oss_v2 as oss
import pytest

from tests.conftest import AK, REGION, STS


@pytest.fixture(params=["ak", "sts"])
def client(local_oss, request):
    account = AK if request.param == "ak" else STS
    cfg = oss.config.load_default()
    cfg.credentials_provider = oss.credentials.StaticCredentialsProvider(
        account.access_key_id, account.access_key_secret, account.security_token or None
    )
    cfg.region = REGION
    cfg.endpoint = local_oss.endpoint
    cfg.use_path_style = True
    return oss.Client(cfg)


def test_objects_round_trip_with_crc64_checked_by_the_sdk(client):
    data = os.urandom(300_000)
    put = client.put_object(oss.PutObjectRequest(bucket="src", key="dir/a b+é.bin", body=data, content_type="x/y"))
    assert put.etag.strip('"') == hashlib.md5(data).hexdigest().upper() and put.hash_crc64
    got = client.get_object(oss.GetObjectRequest(bucket="src", key="dir/a b+é.bin"))
    assert got.body.content == data and got.content_type == "x/y"
    part = client.get_object(oss.GetObjectRequest(bucket="src", key="dir/a b+é.bin", range_header="bytes=10-19"))
    assert part.body.content == data[10:20]
    head = client.head_object(oss.HeadObjectRequest(bucket="src", key="dir/a b+é.bin"))
    assert head.content_length == len(data)
    client.copy_object(oss.CopyObjectRequest(bucket="src", key="dir/copy.bin", source_key="dir/a b+é.bin"))
    listed = client.list_objects_v2(oss.ListObjectsV2Request(bucket="src", prefix="dir/"))
    assert sorted(o.key for o in listed.contents) == ["dir/a b+é.bin", "dir/copy.bin"]
    client.delete_multiple_objects(
        oss.DeleteMultipleObjectsRequest(bucket="src", objects=[oss.DeleteObject(key="dir/copy.bin")])
    )
    with pytest.raises(oss.exceptions.OperationError) as err:
        client.get_object(oss.GetObjectRequest(bucket="src", key="dir/copy.bin"))
    assert "NoSuchKey" in str(err.value)


def test_multipart_acl_create_if_absent_and_presigned_urls(client):
    init = client.initiate_multipart_upload(oss.InitiateMultipartUploadRequest(bucket="src", key="big"))
    chunks = [os.urandom(200 * 1024), os.urandom(150 * 1024)]
    parts = []
    for number, chunk in enumerate(chunks, 1):
        up = client.upload_part(
            oss.UploadPartRequest(bucket="src", key="big", upload_id=init.upload_id, part_number=number, body=chunk)
        )
        parts.append(oss.UploadPart(part_number=number, etag=up.etag))
    client.complete_multipart_upload(
        oss.CompleteMultipartUploadRequest(
            bucket="src",
            key="big",
            upload_id=init.upload_id,
            complete_multipart_upload=oss.CompleteMultipartUpload(parts=parts),
        )
    )
    assert client.get_object(oss.GetObjectRequest(bucket="src", key="big")).body.content == b"".join(chunks)
    client.put_object(oss.PutObjectRequest(bucket="src", key="secret.json", body=b"{}", acl="private"))
    assert client.get_object_acl(oss.GetObjectAclRequest(bucket="src", key="secret.json")).acl == "private"
    with pytest.raises(oss.exceptions.OperationError) as err:
        client.put_object(oss.PutObjectRequest(bucket="src", key="secret.json", body=b"x", forbid_overwrite=True))
    assert "FileAlreadyExists" in str(err.value)
    presigned = client.presign(oss.GetObjectRequest(bucket="src", key="big"))
    with urllib.request.urlopen(presigned.url) as resp:
        assert resp.read() == b"".join(chunks)
