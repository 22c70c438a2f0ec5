"""What can go wrong in ``lq``, each with a stable ``code``, a hint and the exit code it maps to.

Exit codes (also in ``lq --help``): 0 ok, 1 error, 2 usage, 3 timeout while waiting.
"""

from __future__ import annotations

from typing import Any, ClassVar

from limiquantix.common.errors import LimiquantixError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3


class CliError(LimiquantixError):
    """Base of every error ``lq`` reports as one line and an exit code."""

    code = "cli_error"
    exit_code: ClassVar[int] = EXIT_ERROR

    def line(self) -> str:
        """``error: <detail> (<code>) - <hint>``, the one line users see."""
        text = f"error: {self.message} ({self.code})"
        return f"{text} - {self.hint}" if self.hint else text


class UsageError(CliError):
    """A flag or argument is wrong; nothing was sent to the API."""

    code = "usage"
    exit_code = EXIT_USAGE
    default_hint = "See 'lq <command> --help' for the arguments and an example."


class ApiError(CliError):
    """The API answered with an ``application/problem+json`` error."""

    def __init__(self, status: int, code: str, detail: str, hint: str = "",
                 **details: Any) -> None:
        super().__init__(detail, hint=hint, **details)
        self.http_status = status
        self.code = code  # type: ignore[misc]  # instance code: whatever the API said


class ApiUnreachable(CliError):
    """No HTTP answer from the API at all (refused, DNS, TLS, timeout)."""

    code = "api_unreachable"
    default_hint = (
        "Check that the API is running (lq-local starts everything) and that --url or LQ_URL "
        "points at it."
    )


class NoToken(CliError):
    """No token in --token, LQ_API_TOKEN or the local data dir's api-token file."""

    code = "no_token"
    default_hint = (
        "Pass --token, set LQ_API_TOKEN, or run lq on the API host where <data dir>/api-token "
        "is readable (LQ_DATA_DIR)."
    )


class WaitTimeout(CliError):
    """``--wait`` ran out of time before the VM or image reached the wanted state."""

    code = "wait_timeout"
    exit_code = EXIT_TIMEOUT
    default_hint = "The work goes on in the background; follow it with 'lq events' or wait longer."


class VmFailed(CliError):
    """The VM went to ``error`` (or an action failed) while we waited."""

    code = "vm_failed"
    default_hint = "See 'lq vm show NAME' and 'lq vm log NAME'; fix the cause, then start it again."

    def __init__(self, message: str, *, code: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        if code:
            self.code = code  # type: ignore[misc]  # the node's own error code


class ImageFailed(CliError):
    """An import or upload ended in ``error``."""

    code = "image_failed"
    default_hint = "See 'lq image list'; delete the image and import it again once fixed."


class LocalFileError(CliError):
    """A file named on the command line cannot be read or is not what it should be."""

    code = "bad_file"
    default_hint = "Check the path and the file's content."


class SshUnavailable(CliError):
    """The VM has no SSH forward, or ssh/ssh-keyscan is missing."""

    code = "ssh_unavailable"
    default_hint = "Create the VM with --network isolated or --network user to get an SSH forward."
