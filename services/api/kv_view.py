"""In-memory views of KV buckets, kept current by a JetStream watch (no per-request KV scans).

A view subscribes with an ordered push consumer on ``$KV.<bucket>.>`` (last value per key, then
every change), applies each message in the subscription callback, and also accepts the gateway's
own writes at once (:meth:`VmView.put`) so a request sees its write before the watch echoes it.
Revisions decide: an older revision never replaces a newer one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from limiquantix.api.http_json import encode
from limiquantix.api.placement import Allocation
from limiquantix.common.nodes import NodeStatus
from limiquantix.common.vms import VmRecord, VmState, public_view

log = structlog.get_logger()

T = TypeVar("T")

_DELETE_OPS = frozenset({"DEL", "PURGE"})
_DELETE_MARKERS = frozenset({"MaxAge", "Purge", "Remove"})


WATCH_HEARTBEAT_S = 1.0


class KvView(Generic[T]):
    """key -> (value, revision, server time of the write) of one bucket."""

    def __init__(self, js: JetStreamContext, bucket: str, decode: Callable[[bytes], T]) -> None:
        self._js = js
        self._bucket = bucket
        self._decode = decode
        self._prefix = f"$KV.{bucket}."
        self._entries: dict[str, tuple[T, int, float]] = {}
        self._sub: JetStreamContext.PushSubscription | None = None
        self.ready = asyncio.Event()

    async def start(self, wait_s: float = 10.0) -> None:
        """Subscribe and wait until the current content has been loaded."""
        self._sub = await self._js.subscribe(
            f"{self._prefix}>", stream=f"KV_{self._bucket}", cb=self._on_msg,
            ordered_consumer=True, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            pending_msgs_limit=-1, pending_bytes_limit=-1,
            # nats-py recreates an ordered consumer after missed heartbeats: with its 5 s default
            # the view stayed stale 8-17 s after a NATS restart; 1 s makes it ~2-3 s.
            idle_heartbeat=WATCH_HEARTBEAT_S,
        )
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and self._sub.delivered == 0:
            self.ready.set()
        await asyncio.wait_for(self.ready.wait(), wait_s)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # the connection may already be closing
                log.debug("view unsubscribe failed", bucket=self._bucket, error=str(exc))
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        meta = msg.metadata
        key = msg.subject[len(self._prefix):]
        headers = msg.headers or {}
        deleted = headers.get("KV-Operation") in _DELETE_OPS or (
            headers.get("Nats-Marker-Reason") in _DELETE_MARKERS
        )
        revision = int(meta.sequence.stream)
        if deleted:
            self._remove(key, revision)
        else:
            try:
                value = self._decode(msg.data)
            except msgspec.ValidationError as exc:
                log.warning("undecodable KV entry", bucket=self._bucket, key=key, error=str(exc))
            else:
                stamp = meta.timestamp.timestamp() if meta.timestamp else time.time()
                self._apply(key, value, revision, stamp)
        if meta.num_pending == 0:
            self.ready.set()

    def _apply(self, key: str, value: T, revision: int, stamp: float) -> None:
        current = self._entries.get(key)
        if current is None or revision >= current[1]:
            self._on_change(key, current[0] if current else None, value)
            self._entries[key] = (value, revision, stamp)

    def _remove(self, key: str, revision: int) -> None:
        current = self._entries.get(key)
        if current is not None and revision >= current[1]:
            del self._entries[key]
            self._on_change(key, current[0], None)

    def _on_change(self, key: str, old: T | None, new: T | None) -> None:
        """Hook for derived indexes."""

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        return entry[0] if entry else None

    def values(self) -> list[T]:
        return [entry[0] for entry in self._entries.values()]

    def stamped(self) -> list[tuple[T, float]]:
        """Values with the server time of their last write."""
        return [(entry[0], entry[2]) for entry in self._entries.values()]


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

    def _on_change(self, key: str, old: VmRecord | None, new: VmRecord | None) -> None:
        if old is not None and self._names.get(old.name) == old.id:
            del self._names[old.name]
        if new is not None:
            self._names[new.name] = new.id
        else:
            self._json.pop(key, None)
        for vm, sign in ((old, -1), (new, 1)):
            if vm is not None and vm.holds_resources:
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
    """Node heartbeats. A node is live while its last heartbeat is younger than the bucket TTL.

    Expired KV entries vanish from the stream without a message to watchers (unless the server
    places markers), so liveness is judged from the write time as the server recorded it.
    """

    def __init__(self, js: JetStreamContext, bucket: str, ttl_s: float) -> None:
        super().__init__(js, bucket, _node_decoder.decode)
        self.ttl_s = ttl_s

    def live(self, now: float | None = None) -> list[NodeStatus]:
        now = time.time() if now is None else now
        return [node for node, stamp in self.stamped() if now - stamp < self.ttl_s]

    def live_node(self, node_id: str, now: float | None = None) -> NodeStatus | None:
        entry = self._entries.get(node_id)
        now = time.time() if now is None else now
        if entry is None or now - entry[2] >= self.ttl_s:
            return None
        return entry[0]

    def last_seen(self, node_id: str) -> NodeStatus | None:
        """The last heartbeat received, live or not."""
        return self.get(node_id)
