"""Answers this node's queries on ``subjects.node_rpc(node, op)``: today ``console_log``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from limiquantix.common import rpc, subjects
from limiquantix.common.errors import InvalidRequest, NotFound
from limiquantix.common.node_rpc import (
    CONSOLE_LOG,
    ConsoleLogReply,
    console_log_request_decoder,
    encoder,
)
from limiquantix.common.vm_store import VmStore
from limiquantix.node_agent.vm_files import VmFiles

log = structlog.get_logger()

# Room left in a NATS message for the reply's JSON around the log text.
ENVELOPE_BYTES = 1024


def read_tail(path: Path, max_bytes: int) -> ConsoleLogReply:
    """The last ``max_bytes`` of ``path`` as text; an absent log is an empty one."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return ConsoleLogReply(data="", truncated=False, size=0)
    return ConsoleLogReply(data=data.decode("utf-8", errors="replace"), truncated=start > 0,
                           size=size)


def fit_reply(reply: ConsoleLogReply, max_payload: int) -> bytes:
    """The encoded reply, its text shortened (from the front) until it fits one NATS message.

    JSON escapes control characters (serial consoles are full of them) up to six bytes each,
    so the size is checked after encoding.
    """
    while True:
        payload = encoder.encode(reply)
        if len(payload) <= max_payload - ENVELOPE_BYTES or not reply.data:
            return payload
        keep = len(reply.data) // 2
        reply = ConsoleLogReply(data=reply.data[len(reply.data) - keep:], truncated=True,
                                size=reply.size)


class NodeRpc:
    """The responder; one subscription per operation."""

    def __init__(self, store: VmStore, *, node_id: str, data_dir: Path) -> None:
        self._store = store
        self._node_id = node_id
        self._data_dir = data_dir
        self._max_payload = 1 << 20

    async def console_log(self, payload: bytes) -> ConsoleLogReply:
        try:
            request = console_log_request_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(f"invalid console_log request: {exc}") from None
        record = await self._store.find(request.vm_id)
        if record is None or record.node != self._node_id:
            raise NotFound(f"VM {request.vm_id!r} is not on node {self._node_id}",
                           vm_id=request.vm_id)
        path = VmFiles.of(self._data_dir, record.id).serial_log
        return await asyncio.to_thread(read_tail, path, request.max_bytes)

    async def _on_console_log(self, msg: Msg) -> bytes:
        return fit_reply(await self.console_log(msg.data), self._max_payload)

    @contextlib.asynccontextmanager
    async def serving(self, nc: Client) -> AsyncIterator[None]:
        """Answer queries while inside the context."""
        subject = subjects.node_rpc(self._node_id, CONSOLE_LOG)
        self._max_payload = nc.max_payload or 1 << 20
        sub = await rpc.serve(nc, subject, self._on_console_log, what="the node agent")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
