"""``Idempotency-Key`` for ``POST /v1/vms``: the same key and body give the same VM, once.

The key is stored as sha256(key) in the ``idempotency`` bucket (24 h TTL) with the VM id chosen
for it and a hash of the canonical body. The first request claims the key with a KV *create*, so
of two racing identical requests exactly one creates the VM; the other answers with its record.
If the claimant fails before the VM exists it releases the key, so a retry can succeed; if it
dies instead, its claim is a lease (``CLAIM_LEASE_S``) that a retry takes over, with the same VM
id, once it ran out with no VM made. A released key keeps its VM id too (marked ``released``):
a retry of the same body makes the VM under that id, so whatever the failed attempt left behind
-- its name, when NATS lost the answer during a leader election -- is this VM's, not a conflict.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime

import msgspec
from nats.js.kv import KeyValue

from limiquantix.api.errors import IdempotencyKeyReused
from limiquantix.common.errors import InvalidRequest, NotFound
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.model import Model, utcnow

MAX_KEY_LENGTH = 255
CLAIM_ATTEMPTS = 5
# A claim whose VM record does not exist this long after it was taken belongs to a gateway that
# died mid-create: a retry takes it over (keeping its VM id, so at most one VM comes of it).
CLAIM_LEASE_S = 30.0


class IdempotencyEntry(Model, frozen=True, kw_only=True):
    """What a key maps to, and when its claimant took it (the lease)."""

    vm_id: str
    body_hash: str
    claimed_at: datetime | None = None
    released: bool = False  # its claimant failed with no VM made: the next request takes it


class Claim(Model, frozen=True, kw_only=True):
    vm_id: str
    owned: bool  # True: this request creates the VM; False: it already exists or is being made


_encoder = msgspec.json.Encoder()


def storage_key(key: str) -> str:
    """The KV key of an Idempotency-Key (never stored in clear; any characters allowed)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
            hint="Send a unique value such as a UUID.",
        )
    return hashlib.sha256(key.encode()).hexdigest()


def body_hash(body: msgspec.Struct, secret: str) -> str:
    """Keyed hash of the decoded body: formatting, key order and explicit defaults do not matter.

    Keyed (HMAC with the API token) because a body may hold a plain password: a bare hash in
    the bucket would let anyone who reads it test guesses offline.
    """
    return hmac.new(secret.encode(), _encoder.encode(body), hashlib.sha256).hexdigest()


def _lease_ran_out(entry: IdempotencyEntry) -> bool:
    claimed = entry.claimed_at
    return claimed is None or (utcnow() - claimed).total_seconds() > CLAIM_LEASE_S


class IdempotencyKeys:
    """Claims and releases keys in the idempotency bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self._entries = KvRecords(kv, IdempotencyEntry)

    async def claim(self, key: str, digest: str, new_vm_id: str, *,
                    vm_exists: Callable[[str], Awaitable[bool]]) -> Claim:
        """Claim ``key`` for a new VM, or learn the VM an identical earlier request made (or
        take over a claim whose lease ran out with no VM made)."""
        stored = storage_key(key)
        entry = IdempotencyEntry(vm_id=new_vm_id, body_hash=digest, claimed_at=utcnow())
        for _ in range(CLAIM_ATTEMPTS):
            if await self._entries.create(stored, entry) is not None:
                return Claim(vm_id=new_vm_id, owned=True)
            try:
                found, revision = await self._entries.get(stored)
            except NotFound:
                continue  # expired in between: try to claim again
            if found.released:
                vm_id = found.vm_id if found.body_hash == digest else new_vm_id
                taken = msgspec.structs.replace(entry, vm_id=vm_id)
                if await self._entries.replace(stored, taken, revision) is None:
                    continue  # another retry took it first
                return Claim(vm_id=vm_id, owned=True)
            if found.body_hash != digest:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with a different request body",
                    vm_id=found.vm_id,
                )
            if _lease_ran_out(found) and not await vm_exists(found.vm_id):
                renewed = msgspec.structs.replace(found, claimed_at=utcnow())
                if await self._entries.replace(stored, renewed, revision) is None:
                    continue  # another retry took it over first
                return Claim(vm_id=found.vm_id, owned=True)
            return Claim(vm_id=found.vm_id, owned=False)
        raise InvalidRequest("Idempotency-Key keeps changing; retry")

    async def release(self, key: str) -> None:
        """Give up a claim whose VM was never created (the next request takes it over)."""
        stored = storage_key(key)
        try:
            found, revision = await self._entries.get(stored)
        except NotFound:
            return
        released = msgspec.structs.replace(found, released=True)
        await self._entries.replace(stored, released, revision)

    async def still_claimed(self, key: str) -> bool:
        found = await self._entries.find(storage_key(key))
        return found is not None and not found.released
