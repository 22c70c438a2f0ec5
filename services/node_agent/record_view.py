"""This node's VM records, kept in memory by watching the ``vms`` bucket (``common.kv_view``).

Heartbeats and reconciliation read it instead of scanning the bucket every few seconds; anything
that changes a record re-reads it from the bucket first (the view may be a moment behind).
"""

from __future__ import annotations

import asyncio

import structlog
from nats.js import JetStreamContext

from limiquantix.common import subjects
from limiquantix.common.ids import is_vm_id
from limiquantix.common.kv_view import KvView
from limiquantix.common.vm_store import decode_record
from limiquantix.common.vms import VmRecord
from limiquantix.node_agent.libvirt_host import domain_uuid

log = structlog.get_logger()


class NodeRecords(KvView[VmRecord]):
    """The records whose ``node`` is this node, by VM id."""

    def __init__(self, js: JetStreamContext, node_id: str) -> None:
        super().__init__(js, subjects.VMS_BUCKET, decode_record)
        self._node_id = node_id
        self._by_domain: dict[str, str] = {}
        self.changed = asyncio.Event()  # set when a VM arrives on or leaves this node

    def all(self) -> list[VmRecord]:
        return self.values()

    def vm_for_domain(self, dom_uuid: str) -> str | None:
        """The VM id of a domain UUID (they differ only when a VM id is not a UUID)."""
        return self._by_domain.get(dom_uuid)

    def _keep(self, key: str, value: VmRecord) -> bool:
        if value.id != key or not is_vm_id(key):
            # Its id names files and the domain here: one not from the gateway is not acted on.
            log.warning("VM record with an invalid id ignored", key=key[:80])
            return False
        return value.node == self._node_id

    def _on_change(self, key: str, old: VmRecord | None, new: VmRecord | None) -> None:
        if new is None:
            self._by_domain.pop(domain_uuid(key), None)
        else:
            self._by_domain[domain_uuid(key)] = key
        if (old is None) != (new is None):
            self.changed.set()
