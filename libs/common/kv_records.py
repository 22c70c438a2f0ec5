"""Typed records in a JetStream KV bucket: the one way services read and write a bucket.

The one implementation of read / create / CAS-update / purge / list that every store shares (VMs,
images, API tokens, webhooks, console tickets, idempotency keys, heartbeats): a write that lost a
race re-reads and re-applies its change, so no write is ever lost or applied to a stale record.
Services never call a ``KeyValue`` themselves (tests/test_nats_plumbing.py); watching a bucket is
``kv_view.KvView``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from limiquantix.common.errors import Conflict, LimiquantixError, NotFound
from limiquantix.common.model import utcnow

T = TypeVar("T", bound=msgspec.Struct)

CAS_ATTEMPTS = 20
WRONG_LAST_SEQUENCE = 10071  # JetStream's "wrong last sequence" (a compare-and-set lost)


@dataclasses.dataclass(frozen=True, slots=True)
class Updated(Generic[T]):
    """A successful compare-and-set: the record before, after, and the new revision."""

    before: T
    after: T
    revision: int


class WriteAttempt(Generic[T]):
    """One logical update across its retries: what its last try wrote.

    A write can land while its answer is lost (a timeout during a NATS leader election). The
    retry then reads the record already changed; without this it would see nothing left to do
    and report "no change", and the caller would never announce a change that did happen
    (seen: a VM ``running`` with no ``running`` event, in the rolling-restart test). The
    written value carries its own ``updated_at`` (microseconds), so finding it stored proves
    that this write landed.
    """

    __slots__ = ("after", "before", "landed")

    def __init__(self, landed: Callable[[T, T], bool] | None = None) -> None:
        self.before: T | None = None
        self.after: T | None = None
        # (current, what the last try wrote) -> did it land? Default: the very value is stored.
        # A caller whose record others patch meanwhile says what of its write to look for.
        self.landed = landed or (lambda current, written: current == written)


async def bucket_keys(kv: KeyValue) -> list[str]:
    """The keys with a message in ``kv`` (deleted ones included: their marker is a message),
    from one stream-info call that creates no consumer.

    nats-py's ``KeyValue.keys()`` runs an ordered consumer per call; a listing on every request
    made JetStream hit its consumer limit after ~1,000 calls (issue 11). The bucket's stream and
    subject prefix are nats-py's private attributes, read only here.
    """
    prefix: str = kv._pre  # "$KV.<bucket>."
    info = await kv._js.stream_info(kv._stream, subjects_filter=f"{prefix}>")
    return [subject[len(prefix):] for subject in (info.state.subjects or {})]


def _not_found(key: str) -> NotFound:
    return NotFound(f"{key!r} does not exist", key=key)


class KvRecords(Generic[T]):
    """Records of type ``T`` (a Struct with an ``updated_at`` field) keyed by id."""

    def __init__(self, kv: KeyValue, record_type: type[T],
                 not_found: Callable[[str], LimiquantixError] | None = None) -> None:
        self.kv = kv
        self._encoder = msgspec.json.Encoder()
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(record_type)
        self._not_found = not_found or _not_found

    def encode(self, record: T) -> bytes:
        return self._encoder.encode(record)

    async def get(self, key: str) -> tuple[T, int]:
        """The record and its revision; the store's NotFound error when absent."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            raise self._not_found(key) from None
        if not entry.value:
            raise self._not_found(key)
        return self._decoder.decode(entry.value), int(entry.revision or 0)

    async def find(self, key: str) -> T | None:
        try:
            return (await self.get(key))[0]
        except LimiquantixError:
            return None

    async def create(self, key: str, record: T) -> int | None:
        """Store a new record; None when the key exists already."""
        try:
            return int(await self.kv.create(key, self.encode(record)))
        except KeyWrongLastSequenceError:
            return None

    async def update(self, key: str, change: Callable[[T], T | None], *,
                     known: tuple[T, int] | None = None,
                     attempt: WriteAttempt[T] | None = None) -> Updated[T] | None:
        """Apply ``change`` atomically; None when ``change`` declined (returned None).

        ``known``: a (record, revision) the caller believes current, e.g. from its own last
        write: tried first, which saves the read. If it is stale the write fails and the change
        is applied to a fresh read; a decline on it is confirmed on a fresh read too.
        ``attempt``: the same object on every retry of this one update, so a retry after a
        lost answer reports the write that landed (see :class:`WriteAttempt`).
        """
        for _ in range(CAS_ATTEMPTS):
            fresh = known is None
            current, revision = known if known is not None else await self.get(key)
            known = None
            if (attempt is not None and attempt.before is not None and attempt.after is not None
                    and attempt.landed(current, attempt.after)):  # landed; its answer was lost
                return Updated(before=attempt.before, after=current, revision=revision)
            new = change(current)
            if new is None:
                if fresh:
                    return None
                continue
            new = msgspec.structs.replace(new, updated_at=utcnow())
            if attempt is not None:
                attempt.before, attempt.after = current, new
            try:
                revision = await self.kv.update(key, self.encode(new), last=revision)
            except KeyWrongLastSequenceError:
                continue
            return Updated(before=current, after=new, revision=int(revision))
        raise Conflict(f"{key!r} is being changed by many writers; retry", key=key)

    async def put(self, key: str, record: T) -> int:
        """Store ``record`` whatever is there (a value only its writer changes: a heartbeat,
        a log line); the new revision."""
        return int(await self.kv.put(key, self.encode(record)))

    async def replace(self, key: str, record: T, revision: int) -> int | None:
        """Store ``record`` if ``key`` is still at ``revision``; None when it changed."""
        try:
            return int(await self.kv.update(key, self.encode(record), last=revision))
        except KeyWrongLastSequenceError:
            return None

    async def delete(self, key: str, *, revision: int | None = None) -> bool:
        """Delete ``key`` (if still at ``revision`` when given); False when it changed."""
        try:
            await self.kv.delete(key, last=revision)
        except APIError as exc:
            # nats-py raises the stream's own error here, not KeyWrongLastSequenceError.
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return False
            raise
        return True

    async def purge(self, key: str) -> None:
        await self.kv.purge(key)

    async def history(self, key: str) -> list[T]:
        """The values the bucket keeps for ``key``, oldest first (deletes left out)."""
        try:
            entries = await self.kv.history(key)
        except (NotFoundError, NoKeysError):  # KeyNotFoundError is a NotFoundError
            return []
        return [self._decoder.decode(e.value) for e in entries
                if e.value and e.operation is None]

    async def all(self) -> list[T]:
        """Every record (hot paths keep a watched view instead)."""
        records = []
        for key in await bucket_keys(self.kv):
            record = await self.find(key)
            if record is not None:
                records.append(record)
        return records

