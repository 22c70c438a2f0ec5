"""The gateway's views of the ``vms`` and ``nodes`` buckets (no per-request KV scans).

Both are ``common.kv_view.KvView`` (the one watch: initial values, updates, deletes, TTL). The
VM view also takes the gateway's own writes at once (:meth:`VmView.put`), so a request sees
its write before the watch echoes it; revisions decide, an older one never replaces a newer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from nats.js import JetStreamContext

from limiquantix.api.allocation_store import Allocation
from limiquantix.api.http_json import encode
from limiquantix.common.kv_view import KvView
from limiquantix.common.nodes import NodeStatus
from limiquantix.common.vms import VmRecord, VmState, public_view

_vm_decoder = msgspec.json.Decoder(VmRecord)
_node_decoder = msgspec.json.Decoder(NodeStatus)


class VmView(KvView[VmRecord]):
    """Every VM record, with a name -> id index."""

    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        super().__init__(js, bucket, _vm_decoder.decode)
        self._names: dict[str, str] = {}
        # VM id -> (record, its public JSON): records are frozen, so identity means unchanged.
        self._json: dict[str, tuple[VmRecord, bytes]] = {}
        # Node id -> (vCPUs, MiB) of its VMs, kept up to date so placement reads, never sums.
        self._allocated: dict[str, Allocation] = {}
        # Called (on the loop, must not block) with (old, new) on every change of a record.
        self.listeners: list[Callable[[VmRecord | None, VmRecord | None], None]] = []

    def _on_change(self, key: str, old: VmRecord | None, new: VmRecord | None) -> None:
        for listener in self.listeners:
            listener(old, new)
        if old is not None and self._names.get(old.name) == old.id:
            del self._names[old.name]
        if new is not None:
            self._names[new.name] = new.id
        else:
            self._json.pop(key, None)
        for vm, sign in ((old, -1), (new, 1)):
            if vm is not None and vm.takes_capacity:
                vcpus, memory = self._allocated.get(vm.node, (0, 0))
                self._allocated[vm.node] = (vcpus + sign * vm.vcpus,
                                            memory + sign * vm.memory_mib)

    def allocations(self) -> dict[str, Allocation]:
        """Node id -> (vCPUs, memory MiB) its VM records take (see placement)."""
        return self._allocated

    def forget(self, vm_id: str) -> None:
        """Drop a record we deleted ourselves, at once (the watch confirms it later)."""
        current = self._entries.get(vm_id)
        if current is not None:
            self._remove(vm_id, current[1])

    def public_json(self, record: VmRecord) -> bytes:
        """The record as API clients see it, encoded once per version (lists stay cheap)."""
        if record.state == VmState.UNKNOWN:  # a presentation of the moment: never cached
            return encode(public_view(record))
        cached = self._json.get(record.id)
        if cached is not None and cached[0] is record:
            return cached[1]
        data = encode(public_view(record))
        self._json[record.id] = (record, data)
        return data

    def put(self, record: VmRecord, revision: int) -> None:
        """Apply one of our own writes at once (the watch confirms it later)."""
        self._apply(record.id, record, revision, time.time())

    def put_unrevisioned(self, record: VmRecord) -> None:
        """Apply one of our own CAS updates whose new revision we do not know.

        It takes the place of the entry's current revision, so the watch's echo (or any later
        write) replaces it, and the API reads its own write in the meantime.
        """
        current = self._entries.get(record.id)
        self._apply(record.id, record, current[1] if current else 0, time.time())

    def reserve(self, record: VmRecord) -> None:
        """Hold a record not yet written (revision 0) so concurrent placements see it."""
        if record.id not in self._entries:
            self._apply(record.id, record, 0, time.time())

    def release(self, vm_id: str) -> None:
        """Drop a reservation whose write failed (a written record is never dropped here)."""
        current = self._entries.get(vm_id)
        if current is not None and current[1] == 0:
            self._remove(vm_id, 0)

    def by_name(self, name: str) -> VmRecord | None:
        vm_id = self._names.get(name)
        return self.get(vm_id) if vm_id else None


class NodeView(KvView[NodeStatus]):
    """Node heartbeats. A node is live while its last heartbeat is younger than the bucket TTL
    (the view's TTL handling); ``last_seen`` keeps the last one of a node gone silent."""

    def __init__(self, js: JetStreamContext, bucket: str, ttl_s: float) -> None:
        super().__init__(js, bucket, _node_decoder.decode, ttl_s=ttl_s)

    def live(self, now: float | None = None) -> list[NodeStatus]:
        return self.values(now)

    def live_node(self, node_id: str, now: float | None = None) -> NodeStatus | None:
        return self.get(node_id, now)
