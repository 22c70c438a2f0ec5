"""problem+json answers map to one exception class per family, details and Retry-After kept."""

from __future__ import annotations

from limiquantix.client.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ServerError,
    Unavailable,
    from_problem,
)


def test_the_status_picks_the_family_and_the_code_is_the_apis() -> None:
    body = (b'{"type": "urn:limiquantix:problem:image_in_use", "status": 409, "title": '
            b'"Conflict", "detail": "image x is used by 1 VM(s)", "code": "image_in_use", '
            b'"hint": "Delete the VMs first.", "vms": ["a"], "request_id": "r1"}')
    error = from_problem(409, "Conflict", body, "application/problem+json")
    assert isinstance(error, Conflict)
    assert (error.code, error.message, error.hint) == (
        "image_in_use", "image x is used by 1 VM(s)", "Delete the VMs first.")
    assert error.details == {"vms": ["a"]} and error.request_id == "r1"
    assert isinstance(from_problem(422, "", b'{"code": "disk_too_small"}'), InvalidRequest)
    assert isinstance(from_problem(404, "", b'{"code": "vm_not_found"}'), NotFound)


def test_unavailable_carries_retry_after_and_a_non_json_body_still_reads() -> None:
    error = from_problem(503, "Service Unavailable", b'{"code": "not_ready", "detail": "x"}',
                         "application/problem+json", "2")
    assert isinstance(error, Unavailable) and error.retry_after == 2.0
    html = from_problem(500, "Internal Server Error", b"<html>boom</html>\n", "text/html")
    assert isinstance(html, ServerError)
    assert (html.code, html.message) == ("http_500", "<html>boom</html>")
