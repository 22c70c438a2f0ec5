"""Argument handling: bad flags exit 2 before anything is sent, --help everywhere, completion."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from limiquantix.cli import completion
from limiquantix.cli.main import build_parser, run

LQ = str(Path(sys.executable).parent / "lq")
# A URL nothing listens on: a usage error must be reported before any request is tried.
OFFLINE = ["--url", "http://127.0.0.1:9", "--token", "t"]


def _paths() -> list[str]:
    return [path for path, _, _ in completion.walk(build_parser())]


@pytest.mark.parametrize("argv", [
    ["vm", "create"],  # the name missing
    ["vm", "create", "web", "--image", "x", "--cpus", "two"],
    ["vm", "create", "web", "--image", "x", "--wait", "forever"],
    ["vm", "frobnicate", "web"],
    ["vm", "stop"],
    ["image", "import"],
    ["events", "--limit", "many"],
    ["completion", "fish"],
    ["--nope"],
])
def test_bad_flags_exit_2_with_an_error_line(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        run([*OFFLINE, *argv])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "(usage)" in err


@pytest.mark.parametrize("argv", [
    ["vm", "create", "web", "--image", "x", "--memory", "lots"],
    ["vm", "create", "web", "--image", "x", "--disk", "512M"],
    ["vm", "create", "web", "--image", "x", "--network", "wifi"],
    ["vm", "create", "web", "--image", "x", "--wait", "running", "--timeout", "soon"],
    ["image", "import", "http://x/y.qcow2", "--sha256", "abc"],
    ["events", "--since", "yesterday"],
])
def test_bad_values_are_usage_errors_before_any_request(argv: list[str]) -> None:
    err = io.StringIO()
    assert run([*OFFLINE, *argv], out=io.StringIO(), err=err) == 2
    assert "(usage)" in err.getvalue()
    assert "api_unreachable" not in err.getvalue()  # nothing was sent


def test_a_command_group_alone_prints_its_help_and_exits_2() -> None:
    err = io.StringIO()
    assert run(["vm"], out=io.StringIO(), err=err) == 2
    assert "create" in err.getvalue() and "ssh" in err.getvalue()


@pytest.mark.parametrize("path", _paths())
def test_every_command_has_help_with_an_example_and_the_exit_codes(
        path: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        run([*path.split(), "--help"] if path else ["--help"])
    assert raised.value.code == 0
    text = capsys.readouterr().out
    assert "example" in text
    assert "3  timeout while waiting" in text


def test_connection_flags_are_accepted_after_the_command_too() -> None:
    args = build_parser().parse_args(["vm", "list", "--url", "http://h:1", "--token", "x"])
    assert (args.url, args.token) == ("http://h:1", "x")
    args = build_parser().parse_args(["--url", "http://h:2", "vm", "list"])
    assert args.url == "http://h:2"


def test_the_installed_console_script_exits_2_on_bad_flags() -> None:
    result = subprocess.run([LQ, "vm", "create"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "the following arguments are required: name" in result.stderr


def _complete(script: str, words: list[str]) -> list[str]:
    """Run the generated bash completion for ``words`` (the last one is being typed)."""
    line = " ".join(words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        "_lq_complete\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30,
                            check=True)
    return result.stdout.split()


def test_bash_completion_completes_commands_and_options() -> None:
    out = io.StringIO()
    assert run(["completion", "bash"], out=out) == 0
    script = out.getvalue()
    assert subprocess.run(["bash", "-n", "-c", script], timeout=30).returncode == 0
    assert _complete(script, ["lq", ""]) == ["completion", "events", "image", "node", "token",
                                             "vm", "webhook"]
    assert _complete(script, ["lq", "vm", "fo"]) == ["force-stop"]
    assert "--ssh-key" in _complete(script, ["lq", "vm", "create", "web", "--ss"])
    assert _complete(script, ["lq", "image", "import", "--sh"]) == ["--sha256"]


def test_zsh_completion_wraps_the_bash_script() -> None:
    out = io.StringIO()
    assert run(["completion", "zsh"], out=out) == 0
    assert "bashcompinit" in out.getvalue() and "complete -F _lq_complete lq" in out.getvalue()
