"""VM records in the ``vms`` KV bucket, updated with compare-and-set on the revision.

The gateway creates a record and records transitional states; the node agent owning the VM records
what really happened. Both go through :meth:`VmStore.update`, so no write is ever lost.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import msgspec
import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from limiquantix.common import retry
from limiquantix.common.errors import Conflict, NotFound
from limiquantix.common.kv_records import KvRecords, bucket_keys
from limiquantix.common.vms import VmRecord

log = structlog.get_logger()

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(VmRecord)
# Long enough for a JetStream leader election (seconds), short for a request waiting on it.
CREATE_STEP_RETRY_S = 10.0
ORPHAN_NAME_RETRY_S = 10.0


def _not_found(vm_id: str) -> NotFound:
    return NotFound(f"VM {vm_id!r} does not exist", vm_id=vm_id)


class VmStore:
    """Typed access to VM records and the unique-name index."""

    def __init__(self, records: KeyValue, names: KeyValue) -> None:
        self.records = KvRecords(records, VmRecord, _not_found)
        self._names = names

    @property
    def names(self) -> KeyValue:
        """The unique-name index (name -> VM id), raw: for tests (services use the methods)."""
        return self._names

    async def name_claims(self) -> list[tuple[str, str, int]]:
        """Every (name, VM id, revision) of the unique-name index."""
        claims = []
        for name in await bucket_keys(self._names):
            try:
                entry = await self._names.get(name)
            except KeyNotFoundError:
                continue  # freed meanwhile (or only its delete marker is left)
            if entry.value:
                claims.append((name, entry.value.decode(), int(entry.revision or 0)))
        return claims

    async def free_name(self, name: str, revision: int) -> bool:
        """Free ``name`` if it is still at ``revision``; False when it was taken again."""
        return await KvRecords(self._names, VmRecord).delete(name, revision=revision)

    async def get(self, vm_id: str) -> tuple[VmRecord, int]:
        """The record and its revision; NotFound when absent."""
        return await self.records.get(vm_id)

    async def find(self, vm_id: str) -> VmRecord | None:
        return await self.records.find(vm_id)

    async def id_for_name(self, name: str) -> str | None:
        try:
            entry = await self._names.get(name)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def create(self, record: VmRecord) -> int:
        """Store a new record; Conflict when the name is taken.

        Each write rides a NATS leader election out (``retry.py``, up to
        ``CREATE_STEP_RETRY_S``): a write whose answer the election lost is found stored as
        this VM's on the next attempt, which counts as done. A failure past that frees the name
        again when it is this VM's and no record was made, so the client's retry is not refused
        its own name (issue 16).
        """
        try:
            await retry.retry_transient(functools.partial(self._claim_name, record),
                                        what="vm name create", deadline_s=CREATE_STEP_RETRY_S,
                                        vm_id=record.id)
            return await retry.retry_transient(
                functools.partial(self._create_record, record), what="vm record create",
                deadline_s=CREATE_STEP_RETRY_S, vm_id=record.id)
        except Conflict:
            raise  # the name is another VM's: nothing of ours to undo
        except BaseException:
            await self._free_orphan_name(record)
            raise

    async def _claim_name(self, record: VmRecord) -> None:
        try:
            await self._names.create(record.name, record.id.encode())
        except KeyWrongLastSequenceError:
            # Ours when an earlier attempt for this VM id landed without its answer.
            if await self.id_for_name(record.name) != record.id:
                raise Conflict(
                    f"a VM named {record.name!r} already exists",
                    hint="Choose another name, or delete the existing VM first.",
                    name=record.name,
                ) from None

    async def _create_record(self, record: VmRecord) -> int:
        revision = await self.records.create(record.id, record)
        if revision is not None:
            return revision
        # Ids are fresh UUIDs: an existing record is our own earlier attempt, or a bug.
        found, revision = await self.records.get(record.id)
        if found != record:
            raise Conflict(f"VM id {record.id!r} exists already", vm_id=record.id)
        return revision

    async def _free_orphan_name(self, record: VmRecord) -> None:
        """Free ``record``'s name if it points at this VM and the record does not exist;
        retried through a NATS election, then left to the gateway's create sweeper."""
        async def free() -> None:
            try:
                entry = await self._names.get(record.name)
            except KeyNotFoundError:
                return
            if entry.value != record.id.encode() or await self.records.find(record.id):
                return
            await self.free_name(record.name, int(entry.revision or 0))

        try:
            await asyncio.shield(retry.retry_transient(
                free, what="free the name of a VM not created", deadline_s=ORPHAN_NAME_RETRY_S,
                vm_id=record.id))
        except Exception as exc:
            log.warning("name of a VM not created left to the sweeper", vm_id=record.id,
                        error=repr(exc))

    async def update(
        self, vm_id: str, change: Callable[[VmRecord], VmRecord | None]
    ) -> VmRecord | None:
        """Apply ``change`` atomically; it returns None to leave the record as it is."""
        changed = await self.records.update(vm_id, change)
        return changed.after if changed else None

    async def delete(self, record: VmRecord) -> None:
        """Remove the record and free its name."""
        await self.records.purge(record.id)
        try:
            entry = await self._names.get(record.name)
            if entry.value and entry.value.decode() == record.id:
                await self._names.purge(record.name)
        except KeyNotFoundError:
            pass

    async def all(self) -> list[VmRecord]:
        """Every record (the gateway keeps a watched view instead for hot paths)."""
        return await self.records.all()


def encode_record(record: VmRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(data: bytes) -> VmRecord:
    return _decoder.decode(data)
