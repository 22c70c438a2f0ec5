"""VM records in the ``vms`` KV bucket, updated with compare-and-set on the revision.

The gateway creates a record and records transitional states; the node agent owning the VM records
what really happened. Both go through :meth:`VmStore.update`, so no write is ever lost.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from limiquantix.common.base import utcnow
from limiquantix.common.errors import Conflict, NotFound
from limiquantix.common.vms import VmRecord

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(VmRecord)

CAS_ATTEMPTS = 20


class VmStore:
    """Typed access to VM records and the unique-name index."""

    def __init__(self, records: KeyValue, names: KeyValue) -> None:
        self._records = records
        self._names = names

    async def get(self, vm_id: str) -> tuple[VmRecord, int]:
        """The record and its revision; NotFound when absent."""
        try:
            entry = await self._records.get(vm_id)
        except KeyNotFoundError:
            raise NotFound(f"VM {vm_id!r} does not exist", vm_id=vm_id) from None
        if entry.value is None or not entry.value:
            raise NotFound(f"VM {vm_id!r} does not exist", vm_id=vm_id)
        return _decoder.decode(entry.value), int(entry.revision or 0)

    async def find(self, vm_id: str) -> VmRecord | None:
        try:
            return (await self.get(vm_id))[0]
        except NotFound:
            return None

    async def id_for_name(self, name: str) -> str | None:
        try:
            entry = await self._names.get(name)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def create(self, record: VmRecord) -> int:
        """Store a new record; Conflict when the name is taken."""
        try:
            await self._names.create(record.name, record.id.encode())
        except KeyWrongLastSequenceError:
            raise Conflict(
                f"a VM named {record.name!r} already exists",
                hint="Choose another name, or delete the existing VM first.", name=record.name,
            ) from None
        return int(await self._records.create(record.id, _encoder.encode(record)))

    async def update(
        self, vm_id: str, change: Callable[[VmRecord], VmRecord | None]
    ) -> VmRecord | None:
        """Apply ``change`` atomically; it returns None to leave the record as it is."""
        for _ in range(CAS_ATTEMPTS):
            current, revision = await self.get(vm_id)
            new = change(current)
            if new is None:
                return None
            new = msgspec.structs.replace(new, updated_at=utcnow())
            try:
                await self._records.update(vm_id, _encoder.encode(new), last=revision)
            except KeyWrongLastSequenceError:
                continue
            return new
        raise Conflict(f"VM {vm_id!r} is being changed by many writers; retry", vm_id=vm_id)

    async def delete(self, record: VmRecord) -> None:
        """Remove the record and free its name."""
        await self._records.purge(record.id)
        try:
            entry = await self._names.get(record.name)
            if entry.value and entry.value.decode() == record.id:
                await self._names.purge(record.name)
        except KeyNotFoundError:
            pass

    async def all(self) -> list[VmRecord]:
        """Every record (the gateway keeps a watched view instead for hot paths)."""
        try:
            keys = await self._records.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            return []
        records = []
        for key in keys:
            record = await self.find(key)
            if record is not None:
                records.append(record)
        return records


def encode_record(record: VmRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(data: bytes) -> VmRecord:
    return _decoder.decode(data)
