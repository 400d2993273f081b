"""OSS's error answers: the exception every operation raises, and the XML it becomes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

# --- errors -----------------------------------------------------------------------------------


class OssError(Exception):
    def __init__(self, status: int, code: str, message: str, ec: str = "", **extra: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.ec, self.extra = status, code, message, ec, extra


def _no_such_bucket(bucket: str) -> OssError:
    return OssError(404, "NoSuchBucket", "The specified bucket does not exist.", "0015-00000101", BucketName=bucket)


def _no_such_key(key: str) -> OssError:
    return OssError(404, "NoSuchKey", "The specified key does not exist.", "0026-00000001", Key=key)


# --- XML ---------------------------------------------------------------------------------------


def _xml(root: str, children: list[tuple[str, Any]]) -> bytes:
    """`<root>` with children; a child value that is a list of pairs nests."""

    def build(parent: ET.Element, items: list[tuple[str, Any]]) -> None:
        for name, value in items:
            node = ET.SubElement(parent, name)
            if isinstance(value, list):
                build(node, value)
            elif value is not None:
                node.text = str(value)

    element = ET.Element(root)
    build(element, children)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element, encoding="utf-8")
