"""The one-line errors and where the URL and token come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from limiquantix.cli import config
from limiquantix.cli.client import problem_error
from limiquantix.cli.errors import (
    EXIT_TIMEOUT,
    EXIT_USAGE,
    ApiUnreachable,
    NoToken,
    UsageError,
    WaitTimeout,
)


def test_a_problem_document_becomes_detail_code_and_hint_on_one_line() -> None:
    body = (b'{"type": "urn:limiquantix:problem:illegal_transition", "title": "Conflict", '
            b'"status": 409, "detail": "web-1 is stopped; cannot stop", '
            b'"code": "illegal_transition", "hint": "Start it first."}')
    error = problem_error(409, "Conflict", body, "application/problem+json")
    assert error.line() == (
        "error: web-1 is stopped; cannot stop (illegal_transition) - Start it first.")
    assert error.http_status == 409


def test_a_problem_without_hint_has_no_dangling_dash() -> None:
    error = problem_error(404, "Not Found", b'{"code": "not_found", "detail": "gone"}',
                          "application/problem+json")
    assert error.line() == "error: gone (not_found)"


def test_a_non_json_error_body_still_gives_a_clear_line() -> None:
    error = problem_error(502, "Bad Gateway", b"<html>upstream died</html>\n", "text/html")
    assert error.line() == "error: <html>upstream died</html> (http_502)"
    empty = problem_error(500, "Internal Server Error", b"", "")
    assert empty.line() == "error: HTTP 500 Internal Server Error (http_500)"


def test_exit_codes_of_error_kinds() -> None:
    assert UsageError("x").exit_code == EXIT_USAGE
    assert WaitTimeout("x").exit_code == EXIT_TIMEOUT
    assert ApiUnreachable("x").exit_code == 1


def test_flags_win_over_environment_which_wins_over_the_token_file(tmp_path: Path) -> None:
    (tmp_path / "api-token").write_text("from-file\n")
    env = {"LQ_DATA_DIR": str(tmp_path), "LQ_URL": "http://api.example:9000/",
           "LQ_API_TOKEN": "from-env"}
    assert config.resolve("http://flag:1", "from-flag", env) == config.Config(
        "http://flag:1", "from-flag", "--token")
    assert config.resolve(None, None, env) == config.Config(
        "http://api.example:9000", "from-env", "LQ_API_TOKEN")
    del env["LQ_API_TOKEN"], env["LQ_URL"]
    resolved = config.resolve(None, None, env)
    assert resolved.url == config.DEFAULT_URL
    assert resolved.token == "from-file"
    assert resolved.token_source == str(tmp_path / "api-token")


def test_no_token_anywhere_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(NoToken) as raised:
        config.resolve(None, None, {"LQ_DATA_DIR": str(tmp_path)})
    assert str(tmp_path / "api-token") in raised.value.line()
    assert "--token" in raised.value.line()


def test_a_url_without_scheme_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        config.resolve("127.0.0.1:8080", "t", {})
