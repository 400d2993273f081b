from __future__ import annotations

import os
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
