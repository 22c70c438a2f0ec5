"""The one watched view of a KV bucket: its current content in memory, kept current by a watch.

Like nats.py's ``KeyWatcher`` (initial values, then every change), but applied in the
subscription callback (no iterator hop) and with every way an entry can go handled here, once:

- initial values: an ordered push consumer on ``$KV.<bucket>.>`` delivering the last value per
  key; ``ready`` is set once they are in (at once for an empty bucket);
- updates: applied by revision (the stream sequence); an older revision never replaces a newer
  one, so a service may apply its own write at once (``_apply``) and let the watch confirm it;
- deletes and purges: ``KV-Operation: DEL|PURGE``, and the server's delete markers
  (``Nats-Marker-Reason: MaxAge|Purge|Remove``, sent when a stream places markers);
- TTL expiry: a bucket with a TTL (``max_age``) drops entries without telling watchers, so an
  entry whose server write time is older than the TTL is absent for every read here
  (``last_seen`` still returns it: "when did we last hear of it");
- reconnects: nats.py recreates an ordered consumer from the last sequence it delivered after
  missed idle heartbeats; with 1 s the view is current again ~2-3 s after NATS comes back;
- some keys only (``keys=``, then ``follow``): the consumer filters on those keys' subjects, so
  the server sends nothing else (a node agent follows its own VMs, not the whole bucket: issue
  16); ``follow`` changes the set with a new consumer that delivers each key's last value.

Subclasses keep derived indexes in ``_on_change`` and filter with ``_keep`` (a value that is
not kept counts as a delete: it leaves the view when its key changes to something unwanted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

log = structlog.get_logger()

T = TypeVar("T")

_DELETE_OPS = frozenset({"DEL", "PURGE"})
_DELETE_MARKERS = frozenset({"MaxAge", "Purge", "Remove"})

# nats-py recreates an ordered consumer after missed heartbeats: with its 5 s default a view
# stayed stale 8-17 s after a NATS restart; 1 s makes it ~2-3 s.
WATCH_HEARTBEAT_S = 1.0
READY_WAIT_S = 10.0


class KvView(Generic[T]):
    """key -> (value, revision, server time of its write) of one bucket.

    ``ttl_s``: the bucket's TTL; None reads it from the bucket at start (0: no TTL).
    ``keys``: watch only these keys (None: the whole bucket); ``follow`` changes them.
    ``idle_heartbeat_s``: how often an idle watch hears from the server (and how soon a lost
    consumer is noticed: about twice that).
    """

    def __init__(self, js: JetStreamContext, bucket: str, decode: Callable[[bytes], T], *,
                 ttl_s: float | None = None, keys: Iterable[str] | None = None,
                 idle_heartbeat_s: float = WATCH_HEARTBEAT_S) -> None:
        self._js = js
        self._bucket = bucket
        self._decode = decode
        self._prefix = f"$KV.{bucket}."
        self._entries: dict[str, tuple[T, int, float]] = {}
        self._sub: JetStreamContext.PushSubscription | None = None
        self._keys = None if keys is None else frozenset(keys)
        self._idle_heartbeat_s = idle_heartbeat_s
        self.ttl_s = ttl_s
        self.ready = asyncio.Event()

    async def start(self, wait_s: float = READY_WAIT_S) -> None:
        """Subscribe and wait until the current content has been loaded."""
        await self.subscribe()
        await asyncio.wait_for(self.ready.wait(), wait_s)

    async def subscribe(self) -> None:
        """Start watching; ``ready`` is set once the current content has been loaded."""
        stream = f"KV_{self._bucket}"
        if self.ttl_s is None:
            config = (await self._js.stream_info(stream)).config
            self.ttl_s = float(config.max_age or 0)
        keyed = None
        if self._keys is not None:
            if not self._keys:  # nothing to watch (yet): the view is empty and complete
                self.ready.set()
                return
            keyed = ConsumerConfig(filter_subjects=sorted(self._prefix + k for k in self._keys))
        self._sub = await self._js.subscribe(
            f"{self._prefix}>", stream=stream, cb=self._on_msg, config=keyed,
            ordered_consumer=True, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            pending_msgs_limit=-1, pending_bytes_limit=-1, idle_heartbeat=self._idle_heartbeat_s,
        )
        info = await self._sub.consumer_info()
        # Empty only when the server has sent nothing at all: a message it already sent may
        # still wait in this client's queue (``num_pending`` is then 0 too), and the view would
        # be "ready" without it (seen: a node's allocation view ready and empty, so the node
        # followed none of its VMs). Anything sent ends with ``num_pending == 0`` (_on_msg).
        if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
            self.ready.set()

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # the connection may already be closing
                log.debug("view unsubscribe failed", bucket=self._bucket, error=str(exc))
            self._sub = None

    @property
    def following(self) -> frozenset[str] | None:
        """The keys watched (None: the whole bucket)."""
        return self._keys

    async def follow(self, keys: Iterable[str]) -> None:
        """Watch exactly ``keys`` from now on (a view made with ``keys=``).

        A new consumer on the new set delivers each key's last message (its value, or the
        marker of its delete or purge), then every change: nothing written while the old
        consumer was replaced is missed, and older revisions it repeats are ignored. Entries
        of keys no longer watched leave the view.
        """
        wanted = frozenset(keys)
        if wanted == self._keys and self._sub is not None:
            return
        await self.stop()
        self._keys = wanted
        for key in [k for k in self._entries if k not in wanted]:
            old = self._entries.pop(key)[0]
            self._on_change(key, old, None)
        await self.subscribe()

    async def run(self) -> None:
        """Watch until cancelled (a task in a TaskGroup); ``ready`` tells when it is loaded."""
        await self.subscribe()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

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
            except msgspec.DecodeError as exc:  # validation errors included
                log.warning("undecodable KV entry", bucket=self._bucket, key=key[:80],
                            error=str(exc))
                self._remove(key, revision)
            else:
                stamp = meta.timestamp.timestamp() if meta.timestamp else time.time()
                if self._keep(key, value):
                    self._apply(key, value, revision, stamp)
                else:
                    self._remove(key, revision)
        if meta.num_pending == 0:
            self.ready.set()

    def _keep(self, key: str, value: T) -> bool:
        """Hook: False treats ``value`` as absent (a view of a part of the bucket)."""
        return True

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
        """Hook for derived indexes (a TTL expiry is not a change: reads skip the entry)."""

    def _live(self, stamp: float, now: float | None) -> bool:
        if not self.ttl_s:
            return True
        return (time.time() if now is None else now) - stamp < self.ttl_s

    def get(self, key: str, now: float | None = None) -> T | None:
        """The value of ``key``; None when absent, deleted or expired (TTL)."""
        entry = self._entries.get(key)
        return entry[0] if entry is not None and self._live(entry[2], now) else None

    def values(self, now: float | None = None) -> list[T]:
        """Every value present (not deleted, not expired)."""
        return [value for value, _, stamp in self._entries.values() if self._live(stamp, now)]

    def last_seen(self, key: str) -> T | None:
        """The last value received for ``key``, expired (TTL) or not; None once deleted."""
        entry = self._entries.get(key)
        return entry[0] if entry else None
