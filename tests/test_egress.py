"""egress: which addresses a requester-chosen URL may lead to, and region ids (pure; literal
addresses only, so nothing is resolved or connected to)."""

from __future__ import annotations

import pytest

import egress
from errors import AccessDenied, InvalidRequest
from oss_names import check_region


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.100.100.200", "metadata"),
        ("100.64.0.1", "shared"),
        ("224.0.0.1", "address"),
        ("240.0.0.1", "address"),
    ],
)
def test_addresses_a_request_may_not_reach(address, kind):
    assert kind in egress.why_refused(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "47.96.1.1"])
def test_public_addresses_pass(address):
    assert egress.why_refused(address) == ""


def test_the_functions_allowance_opens_exactly_its_networks():
    allowed = egress.parse_networks("127.0.0.1, 10.0.0.0/8")
    assert egress.why_refused("127.0.0.1", allowed) == ""
    assert egress.why_refused("10.200.0.1", allowed) == ""
    assert egress.why_refused("127.0.0.2", allowed) and egress.why_refused("192.168.0.1", allowed)
    with pytest.raises(ValueError, match="not-a-net"):
        egress.parse_networks("10.0.0.0/8,not-a-net")


def test_urls_are_checked_by_every_spelling_of_the_host():
    for url in (
        "http://127.0.0.1:9/x",
        "https://[::1]/",
        "http://100.100.100.200/latest/",
        "http://[::ffff:10.0.0.1]/",
    ):
        with pytest.raises(AccessDenied, match="FCBUILD_ALLOW_PRIVATE_NETS"):
            egress.check_url(url, "notify", resolve=False)
    for url in ("ftp://example.com/", "file:///etc/passwd", "gopher://x/", "http:///nohost"):
        with pytest.raises(InvalidRequest):
            egress.check_url(url, "notify", resolve=False)
    egress.check_url("https://hooks.example.com/x", "notify", resolve=False)  # a name: resolved at use


def test_localhost_is_resolved_and_refused():
    with pytest.raises(AccessDenied, match="loopback"):
        egress.check_url("http://localhost:9/", "build.registry")


@pytest.mark.parametrize("region", ["cn-hangzhou", "ap-southeast-1", "cn-shanghai-finance-1", "us-west-1"])
def test_region_ids(region):
    assert check_region(region, "x-fc-region") == region


@pytest.mark.parametrize(
    "region", ["x@127.0.0.1:9/", "cn-hangzhou.evil.com", "CN-HANGZHOU", "hangzhou", "cn--x", "-cn"]
)
def test_what_is_not_a_region_id(region):
    with pytest.raises(InvalidRequest, match="not a region id"):
        check_region(region, "x-fc-region")
