"""Request/reply queries the gateway makes to one node agent (``subjects.node_rpc(node, op)``).

Core NATS request/reply (not JetStream, ``common.rpc``): a query is answered by the node that
owns the VM, or times out when that node is down. An error (e.g. the VM is not on that node)
travels in ``common.rpc``'s error headers; the gateway gets it as a RemoteError.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from limiquantix.common.model import Model

CONSOLE_LOG = "console_log"  # operation name for subjects.node_rpc(node, CONSOLE_LOG)
DEFAULT_CONSOLE_LOG_BYTES = 64 * 1024
MAX_CONSOLE_LOG_BYTES = 4 * 1024 * 1024


class ConsoleLogRequest(Model, frozen=True, kw_only=True):
    """The last ``max_bytes`` of a VM's serial console log."""

    vm_id: str
    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=MAX_CONSOLE_LOG_BYTES)] = (
        DEFAULT_CONSOLE_LOG_BYTES
    )


class ConsoleLogReply(Model, frozen=True, kw_only=True):
    """The tail of the log as text (UTF-8, undecodable bytes replaced)."""

    data: str = ""
    truncated: bool = False  # True when the log is longer than what was sent
    size: int = 0  # full size of the log file in bytes


console_log_request_decoder = msgspec.json.Decoder(ConsoleLogRequest)
console_log_reply_decoder = msgspec.json.Decoder(ConsoleLogReply)
encoder = msgspec.json.Encoder()
