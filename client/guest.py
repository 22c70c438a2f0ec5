"""``client.guest``: inside a VM through its QEMU guest agent (docs/guest-agent.md), sync and
async: run a program, copy a file in or out, set a guest user's password.

A VM whose agent is not connected raises the API's 409 ``agent_unavailable`` (``ApiError`` with
that code and its hint), like every other refusal.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING

import msgspec

from limiquantix.client.transport import decode, seg
from limiquantix.common.guest_rpc import (
    ExecRequest,
    ExecResult,
    FileWritten,
    PasswordRequest,
    PasswordResult,
)

if TYPE_CHECKING:
    from limiquantix.client.aio import AsyncClient
    from limiquantix.client.sync import Client

EXEC_MARGIN_S = 15.0  # on top of the command's own timeout: the node's polling and NATS
FILE_TIMEOUT_S = 3600.0
READ_BLOCK = 256 * 1024


def _files(vm: str) -> str:
    return f"/v1/vms/{seg(vm)}/files"


def _file_query(path: str, mode: str, owner: str) -> dict[str, str]:
    query = {"path": path}
    if mode:
        query["mode"] = mode
    if owner:
        query["owner"] = owner
    return query


class Guest:
    """``/v1/vms/{vm}/exec``, ``/files`` and ``/password``."""

    def __init__(self, client: Client) -> None:
        self._t = client.transport

    def exec(self, vm: str, command: Sequence[str], *, input: str = "",
             timeout_s: int = 30) -> ExecResult:
        """Run ``command`` (no shell) and wait for it; its exit code, stdout and stderr."""
        body = ExecRequest(command=tuple(command), input=input, timeout_s=timeout_s)
        return self._t.call("POST", f"/v1/vms/{seg(vm)}/exec", ExecResult, json_body=body,
                            timeout_s=timeout_s + EXEC_MARGIN_S)

    def write_file(self, vm: str, path: str, data: bytes | IO[bytes], *, size: int | None = None,
                   mode: str = "", owner: str = "") -> FileWritten:
        """Write ``data`` (bytes or a binary file, streamed) to ``path`` in the guest."""
        headers = {"Content-Type": "application/octet-stream"}
        if size is not None:
            headers["Content-Length"] = str(size)
        return self._t.call("PUT", _files(vm), FileWritten, query=_file_query(path, mode, owner),
                            headers=headers, body=data, timeout_s=FILE_TIMEOUT_S)

    def read_file(self, vm: str, path: str) -> Iterator[bytes]:
        """The guest's file at ``path``, in blocks as they arrive (errors raise at once)."""
        conn, response, _ = self._t.open("GET", _files(vm), query={"path": path},
                                         headers={"Accept": "application/octet-stream"},
                                         timeout_s=FILE_TIMEOUT_S)

        def blocks() -> Iterator[bytes]:
            try:
                while block := response.read(READ_BLOCK):
                    yield block
            finally:
                conn.close()
        return blocks()

    def set_password(self, vm: str, user: str, password: str) -> PasswordResult:
        """Set ``user``'s password in the guest (hashed there; never stored by Limiquantix)."""
        return self._t.call("POST", f"/v1/vms/{seg(vm)}/password", PasswordResult,
                            json_body=PasswordRequest(user=user, password=password))


class AsyncGuest:
    """The same, for :class:`~limiquantix.client.aio.AsyncClient`."""

    def __init__(self, client: AsyncClient) -> None:
        self._t = client.transport

    async def exec(self, vm: str, command: Sequence[str], *, input: str = "",
                   timeout_s: int = 30) -> ExecResult:
        body = ExecRequest(command=tuple(command), input=input, timeout_s=timeout_s)
        async with self._t.open("POST", f"/v1/vms/{seg(vm)}/exec",
                                headers={"Content-Type": "application/json"},
                                data=_encode(body), timeout_s=timeout_s + EXEC_MARGIN_S
                                ) as response:
            return decode(await response.read(), ExecResult)

    async def write_file(self, vm: str, path: str, data: bytes, *, mode: str = "",
                         owner: str = "") -> FileWritten:
        async with self._t.open("PUT", _files(vm), query=_file_query(path, mode, owner),
                                headers={"Content-Type": "application/octet-stream"},
                                data=data, timeout_s=FILE_TIMEOUT_S) as response:
            return decode(await response.read(), FileWritten)

    async def read_file(self, vm: str, path: str) -> bytes:
        async with self._t.open("GET", _files(vm), query={"path": path},
                                timeout_s=FILE_TIMEOUT_S) as response:
            return await response.read()

    async def set_password(self, vm: str, user: str, password: str) -> PasswordResult:
        body = PasswordRequest(user=user, password=password)
        async with self._t.open("POST", f"/v1/vms/{seg(vm)}/password",
                                headers={"Content-Type": "application/json"},
                                data=_encode(body)) as response:
            return decode(await response.read(), PasswordResult)


def _encode(body: object) -> bytes:
    return msgspec.json.encode(body)
