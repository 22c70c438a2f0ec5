"""This node's VM records, kept in memory by watching the ``vms`` bucket.

Heartbeats and reconciliation read it instead of scanning the bucket every few seconds; anything
that changes a record re-reads it from the bucket first (the view may be a moment behind).
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog
from nats.js.kv import KeyValue

from limiquantix.common.ids import is_vm_id
from limiquantix.common.vm_store import decode_record
from limiquantix.common.vms import VmRecord
from limiquantix.node_agent.libvirt_host import domain_uuid

log = structlog.get_logger()

_DELETES = frozenset({"DEL", "PURGE"})


class NodeRecords:
    """The records whose ``node`` is this node, by VM id."""

    def __init__(self, bucket: KeyValue, node_id: str) -> None:
        self._bucket = bucket
        self._node_id = node_id
        self._records: dict[str, VmRecord] = {}
        self._by_domain: dict[str, str] = {}
        self.ready = asyncio.Event()
        self.changed = asyncio.Event()  # set when a VM arrives on or leaves this node

    def all(self) -> list[VmRecord]:
        return list(self._records.values())

    def vm_for_domain(self, dom_uuid: str) -> str | None:
        """The VM id of a domain UUID (they differ only when a VM id is not a UUID)."""
        return self._by_domain.get(dom_uuid)

    def _apply(self, key: str, value: bytes | None, operation: str | None) -> None:
        record: VmRecord | None = None
        if value and operation not in _DELETES:
            try:
                record = decode_record(value)
            except msgspec.DecodeError:
                log.warning("undecodable VM record ignored", vm_id=key)
        if record is not None and (record.id != key or not is_vm_id(key)):
            # Its id names files and the domain here: one not from the gateway is not acted on.
            log.warning("VM record with an invalid id ignored", key=key[:80])
            record = None
        if record is not None and record.node == self._node_id:
            if key not in self._records:
                self.changed.set()
            self._records[key] = record
            self._by_domain[domain_uuid(key)] = key
        elif self._records.pop(key, None) is not None:
            self._by_domain.pop(domain_uuid(key), None)
            self.changed.set()

    async def run(self) -> None:
        """Follow the bucket until cancelled (``ready`` is set once the initial values are in)."""
        watcher = await self._bucket.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    self.ready.set()
                    continue
                self._apply(entry.key, entry.value, entry.operation)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
