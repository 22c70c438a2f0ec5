"""Identifier types, checked wherever a message is decoded (the API *and* the node).

An id from a message may end up in a file path, a KV key or a subject token, so its shape is
part of its type: ``msgspec`` refuses a message whose ids do not match while decoding it, before
any handler sees it (``../../x`` is not a VM id, whatever the sender meant).

- :data:`VmId`: the gateway makes VM ids with ``str(uuid.uuid4())`` (lower-case, hyphenated).
- :data:`ImageId`: the image library makes ``str(uuid.uuid4())`` too; the shipped catalog uses
  readable ids such as ``debian-12``. Both are DNS labels.
- :data:`NodeId`: a node's short host name, lower-cased (``Settings.effective_node_id``).
- :data:`CommandId`: a ``Nats-Msg-Id``; any subject-safe token (the gateway sends UUIDs).
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"

VmId = Annotated[str, msgspec.Meta(
    pattern=UUID_PATTERN, description="VM id: a lower-case hyphenated UUID")]
ImageId = Annotated[str, msgspec.Meta(
    pattern=DNS_LABEL_PATTERN, max_length=63,
    description="image id: a UUID or a catalog id (DNS label)")]
NodeId = Annotated[str, msgspec.Meta(
    pattern=DNS_LABEL_PATTERN, max_length=63, description="node id: a DNS label")]
CommandId = Annotated[str, msgspec.Meta(
    pattern=TOKEN_PATTERN, description="command id: letters, digits, '_' and '-'")]

_UUID = re.compile(UUID_PATTERN)
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)


def is_vm_id(value: str) -> bool:
    """True when ``value`` has the shape of a VM id (for ids that did not come in a Struct)."""
    return bool(_UUID.match(value))


def is_image_id(value: str) -> bool:
    """True when ``value`` has the shape of an image id (a UUID or a catalog id)."""
    return len(value) <= 63 and bool(_DNS_LABEL.match(value))
