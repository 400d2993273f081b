"""triggers: FCBUILD_ALLOWED_TARGETS patterns, matched by whole path segments (pure)."""

from __future__ import annotations

import pytest

from errors import AccessDenied
from triggers import check_allowed, target_matches


@pytest.mark.parametrize(
    "pattern, url",
    [
        ("oss://site/shop", "oss://site/shop/"),
        ("oss://site/shop/", "oss://site/shop/en/"),
        ("oss://site", "oss://site/"),
        ("oss://site/", "oss://site/docs/"),
        ("oss://site/pr-*/", "oss://site/pr-12/"),
        ("oss://site-*/", "oss://site-eu/"),
    ],
)
def test_a_pattern_allows_its_folder_and_what_is_under_it(pattern, url):
    assert target_matches(pattern, url)


@pytest.mark.parametrize(
    "pattern, url",
    [
        ("oss://site/shop", "oss://site/shop-evil/"),
        ("oss://site/shop/", "oss://site/shopping/"),
        ("oss://site", "oss://site2/"),
        ("oss://site/", "oss://site2/docs/"),
        ("oss://site/shop/en/", "oss://site/shop/"),
        ("oss://site/*", "oss://other/x/"),
        ("oss://", "oss://site/"),
    ],
)
def test_a_pattern_never_allows_a_neighbour_that_shares_its_spelling(pattern, url):
    assert not target_matches(pattern, url)


def test_a_star_never_crosses_a_folder():
    assert target_matches("oss://site/*/", "oss://site/a/")
    assert target_matches("oss://site/a*", "oss://site/ab/c/")
    assert not target_matches("oss://site/a*/c/", "oss://site/ab/x/c/")


def test_the_check_names_the_patterns():
    check_allowed("site", "shop/", ("oss://site/shop",))
    with pytest.raises(AccessDenied, match="oss://site/shop-evil/ is not one"):
        check_allowed("site", "shop-evil/", ("oss://site/shop",))
