from __future__ import annotations

import os
import ssl
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# The frozen binary's own checks run in `make test-binary`, which names the binary in FC_RUNTIME_BIN.
collect_ignore = [] if os.environ.get("FC_RUNTIME_BIN") else ["frozen"]

import pytest  # noqa: E402

from localoss import Account, LocalOss  # noqa: E402

AK = Account("LTAI-test-key", "test-secret-value-1")
STS = Account("STS.test-key", "sts-secret-value-2", "sts-token-value-3")
REGION = "cn-hangzhou"


@pytest.fixture
def local_oss(tmp_path):
    with LocalOss(str(tmp_path / "oss"), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as oss:
        yield oss


def self_signed_tls(folder) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    """A server context with a fresh self-signed certificate for 127.0.0.1 (made by openssl in `folder`):
    what no client that verifies TLS may accept."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
