"""The Origin check: the gateway's own origin, an allow-list, and no Origin only when allowed."""

from __future__ import annotations

import pytest

from limiquantix.api.console.origin import normalize, origin_allowed, parse_allowed


@pytest.mark.parametrize(("given", "expected"), [
    ("http://Gw.Example:80", "http://gw.example"),
    ("https://gw.example:443/", "https://gw.example"),
    ("https://gw.example:8443", "https://gw.example:8443"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("null", None),
    ("file:///tmp/x.html", None),
    ("http://host:99999", None),
    ("", None),
])
def test_origins_compare_by_scheme_host_and_effective_port(given: str,
                                                           expected: str | None) -> None:
    assert normalize(given) == expected


def test_own_origin_passes_and_a_foreign_one_does_not() -> None:
    own = ["http://127.0.0.1:8080"]
    allowed = frozenset[str]()
    assert origin_allowed("http://127.0.0.1:8080", own=own, allowed=allowed, allow_missing=False)
    assert not origin_allowed("http://127.0.0.1:8081", own=own, allowed=allowed,
                              allow_missing=False)
    assert not origin_allowed("https://127.0.0.1:8080", own=own, allowed=allowed,
                              allow_missing=False)
    assert not origin_allowed("null", own=own, allowed=allowed, allow_missing=True)


def test_allow_list_setting_admits_listed_origins() -> None:
    allowed = parse_allowed(" https://ui.example.org , http://localhost:3000,not a url")
    assert allowed == {"https://ui.example.org", "http://localhost:3000"}
    assert origin_allowed("https://UI.example.org:443", own=[], allowed=allowed,
                          allow_missing=False)
    assert not origin_allowed("https://other.example.org", own=[], allowed=allowed,
                              allow_missing=False)


def test_missing_origin_passes_only_when_allowed() -> None:
    assert origin_allowed(None, own=[], allowed=frozenset(), allow_missing=True)
    assert not origin_allowed(None, own=[], allowed=frozenset(), allow_missing=False)
