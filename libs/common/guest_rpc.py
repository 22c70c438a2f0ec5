"""The node's guest-agent operations (docs/guest-agent.md): schemas and errors shared by the
gateway and the node agent, asked on ``subjects.node_rpc(node, op)`` like ``node_rpc``'s queries.

The QEMU guest agent carries file data base64-encoded; so do these messages. A NATS message is
at most ~1 MiB (``max_payload``): a file moves in chunks of at most ``FILE_CHUNK_BYTES``
(86 KiB once base64-encoded; the agent parses each chunk's JSON in the guest, slow under TCG),
and an exec's output is bounded by ``MAX_EXEC_OUTPUT_BYTES``. File chunks and password changes
are waited for ``SLOW_OP_TIMEOUT_S`` (the node gives the agent less, so its answer comes first).
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

import msgspec

from limiquantix.common.errors import Conflict, LimiquantixError, NotFound
from limiquantix.common.model import Model, RequestBody

GUEST_EXEC = "guest_exec"
GUEST_FILE_OPEN = "guest_file_open"
GUEST_FILE_READ = "guest_file_read"
GUEST_FILE_WRITE = "guest_file_write"
GUEST_FILE_CLOSE = "guest_file_close"
GUEST_PASSWORD = "guest_password"
OPERATIONS = (GUEST_EXEC, GUEST_FILE_OPEN, GUEST_FILE_READ, GUEST_FILE_WRITE, GUEST_FILE_CLOSE,
              GUEST_PASSWORD)

# Host -> guest is the agent's slow direction: it reads the JSON command in 4 KiB pieces through
# the virtio-serial port; a 256 KiB chunk took over 45 s on a loaded TCG guest (guest -> host,
# a 1 MiB exec output came back in under 2 s).
FILE_CHUNK_BYTES = 64 * 1024
SLOW_OP_TIMEOUT_S = 60.0
# stdout and stderr together, in the reply (base64 inflates the agent's answer by 4/3 first).
MAX_EXEC_OUTPUT_BYTES = 256 * 1024
MAX_EXEC_TIMEOUT_S = 600
MAX_EXEC_INPUT_BYTES = 256 * 1024
# An absolute guest path (POSIX or Windows), no NUL.
GUEST_PATH_PATTERN = r"^(/|[A-Za-z]:[\\/])[^\x00]*$"
GuestPath = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=GUEST_PATH_PATTERN)]
GuestUser = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*\$?$")]
Argument = Annotated[str, msgspec.Meta(max_length=65536)]
Handle = Annotated[int, msgspec.Meta(ge=0)]


class AgentUnavailable(Conflict):
    """The VM's QEMU guest agent is not connected (none installed, not started yet, or stopped)."""

    code = "agent_unavailable"
    default_hint = ("The VM's QEMU guest agent is not connected: wait until the VM has booted "
                    "(guest.agent.connected in `lq vm show`), or install qemu-guest-agent in the "
                    "guest (docs/guest-agent.md). VMs created with cloud_init.guest_agent=false "
                    "get none.")


class GuestAgentError(LimiquantixError):
    """The guest agent answered an error (e.g. a command it refuses, a file it cannot open)."""

    code = "guest_agent_error"
    status = 502
    default_hint = "The message is the guest agent's own; check the path, user or command."


class GuestFileNotFound(NotFound):
    """The file does not exist in the guest."""

    code = "guest_file_not_found"
    default_hint = "Check the path inside the guest (absolute, e.g. /etc/hostname)."


class GuestExecTimeout(LimiquantixError):
    """A command run through the agent did not end within its timeout (it may still run)."""

    code = "guest_exec_timeout"
    status = 504
    default_hint = "Give it a longer timeout_s (at most 600), or run it in the background."


class GuestFileTooLarge(LimiquantixError):
    """A file is larger than LQ_GUEST_FILE_MAX_BYTES."""

    code = "guest_file_too_large"
    status = 413
    default_hint = "Raise LQ_GUEST_FILE_MAX_BYTES on the gateway, or copy the file over SSH."


# --- HTTP bodies (the gateway's) --------------------------------------------------------------

class ExecRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/vms/{vm}/exec``: run a program in the guest through its agent."""

    command: Annotated[tuple[Argument, ...], msgspec.Meta(
        min_length=1, max_length=256,
        description="program and arguments, no shell (e.g. [\"cat\", \"/etc/hostname\"]; use "
                    "[\"sh\", \"-c\", \"...\"] for one)")]
    input: Annotated[str, msgspec.Meta(
        max_length=MAX_EXEC_INPUT_BYTES, description="text given on the program's stdin")] = ""
    timeout_s: Annotated[int, msgspec.Meta(ge=1, le=MAX_EXEC_TIMEOUT_S)] = 30


class ExecResult(Model, frozen=True, kw_only=True):
    """What the program did (output decoded as UTF-8, undecodable bytes replaced)."""

    exit_code: int | None = None  # None when a signal ended it
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False  # True when output beyond MAX_EXEC_OUTPUT_BYTES was dropped
    duration_s: float = 0.0


class PasswordRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/vms/{vm}/password``: set a guest user's password through the agent."""

    user: GuestUser
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class PasswordResult(Model, frozen=True, kw_only=True):
    user: str


class FileWritten(Model, frozen=True, kw_only=True):
    """Answer of ``PUT /v1/vms/{vm}/files``."""

    path: str
    size: int
    sha256: str


# --- node RPC messages ------------------------------------------------------------------------

class GuestExecCall(Model, frozen=True, kw_only=True):
    vm_id: str
    command: Annotated[tuple[Argument, ...], msgspec.Meta(min_length=1, max_length=256)]
    input: Annotated[str, msgspec.Meta(max_length=MAX_EXEC_INPUT_BYTES)] = ""
    timeout_s: Annotated[int, msgspec.Meta(ge=1, le=MAX_EXEC_TIMEOUT_S)] = 30


class GuestExecReply(Model, frozen=True, kw_only=True):
    """The node's answer to ``guest_exec``: output as base64 (JSON would escape a control
    character into six bytes: 256 KiB of NULs would not fit one NATS message)."""

    exit_code: int | None = None
    signal: int | None = None
    stdout_b64: str = ""
    stderr_b64: str = ""
    truncated: bool = False
    duration_s: float = 0.0

    def result(self) -> ExecResult:
        """As the API answers it: text (UTF-8, undecodable bytes replaced)."""
        return ExecResult(
            exit_code=self.exit_code, signal=self.signal, truncated=self.truncated,
            duration_s=self.duration_s,
            stdout=base64.b64decode(self.stdout_b64).decode("utf-8", errors="replace"),
            stderr=base64.b64decode(self.stderr_b64).decode("utf-8", errors="replace"))


class FileOpenCall(Model, frozen=True, kw_only=True):
    vm_id: str
    path: GuestPath
    mode: Literal["r", "w"] = "r"


class FileOpened(Model, frozen=True, kw_only=True):
    handle: int


class FileReadCall(Model, frozen=True, kw_only=True):
    vm_id: str
    handle: Handle
    count: Annotated[int, msgspec.Meta(ge=1, le=FILE_CHUNK_BYTES)] = FILE_CHUNK_BYTES


class FileChunk(Model, frozen=True, kw_only=True):
    data_b64: str = ""
    eof: bool = False


class FileWriteCall(Model, frozen=True, kw_only=True):
    vm_id: str
    handle: Handle
    # base64 of at most FILE_CHUNK_BYTES
    data_b64: Annotated[str, msgspec.Meta(max_length=(FILE_CHUNK_BYTES + 2) // 3 * 4)]


class FileWrote(Model, frozen=True, kw_only=True):
    count: int


class FileCloseCall(Model, frozen=True, kw_only=True):
    vm_id: str
    handle: Handle
    mode: Annotated[str, msgspec.Meta(pattern=r"^$|^[0-7]{3,4}$")] = ""  # chmod after writing
    owner: Annotated[str, msgspec.Meta(
        max_length=65, pattern=r"^$|^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
    ] = ""  # chown after writing
    path: str = ""  # needed with mode/owner


class GuestPasswordCall(Model, frozen=True, kw_only=True):
    vm_id: str
    user: GuestUser
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class Done(Model, frozen=True, kw_only=True):
    ok: bool = True


encoder = msgspec.json.Encoder()
