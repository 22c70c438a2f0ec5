"""Idempotency keys: stored hashed, bodies compared canonically, claims exclusive."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from limiquantix.api import idempotency
from limiquantix.api.errors import IdempotencyKeyReused
from limiquantix.api.idempotency import IdempotencyKeys, body_hash, storage_key
from limiquantix.common import subjects
from limiquantix.common.errors import InvalidRequest
from limiquantix.common.vms import CreateVmRequest
from tests.support.api_gateway import Gateway


def request(raw: bytes) -> CreateVmRequest:
    return msgspec.json.decode(raw, type=CreateVmRequest)


def test_the_key_is_stored_only_as_its_sha256() -> None:
    stored = storage_key("my key / with spaces")
    assert len(stored) == 64 and "my key" not in stored
    with pytest.raises(InvalidRequest):
        storage_key("")
    with pytest.raises(InvalidRequest):
        storage_key("x" * 256)


def test_equal_bodies_hash_equal_whatever_their_formatting() -> None:
    a = request(b'{"name":"a","image":"/i","vcpus":1}')
    b = request(b'{ "image": "/i", "name": "a" }')
    c = request(b'{"name":"a","image":"/i","vcpus":2}')
    assert body_hash(a, "k") == body_hash(b, "k") != body_hash(c, "k")


def test_the_body_hash_is_keyed_so_a_password_cannot_be_guessed_from_it() -> None:
    body = request(b'{"name":"a","image":"/i","cloud_init":{"password":"pw"}}')
    assert body_hash(body, "token-1") != body_hash(body, "token-2")


async def test_of_racing_claims_exactly_one_owns_the_key(gw: Gateway) -> None:
    keys = IdempotencyKeys(await gw.js.key_value(subjects.IDEMPOTENCY_BUCKET))
    claims = await asyncio.gather(*(keys.claim("k1", "h", f"vm-{i}", vm_exists=_never)
                                    for i in range(10)))
    owners = [claim for claim in claims if claim.owned]
    assert len(owners) == 1
    assert {claim.vm_id for claim in claims} == {owners[0].vm_id}
    with pytest.raises(IdempotencyKeyReused):
        await keys.claim("k1", "other", "vm-x", vm_exists=_never)
    await keys.release("k1")
    assert not await keys.still_claimed("k1")
    assert (await keys.claim("k1", "other", "vm-y", vm_exists=_never)).owned


async def _never(vm_id: str) -> bool:
    return False


async def test_a_claim_whose_owner_died_is_taken_over_after_its_lease_with_the_same_vm_id(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway that dies between its claim and the VM's record no longer blocks the key for
    24 h: once the lease ran out a retry owns the claim, keeping the VM id (one VM at most)."""
    keys = IdempotencyKeys(await gw.js.key_value(subjects.IDEMPOTENCY_BUCKET))
    first = await keys.claim("k2", "h", "vm-1", vm_exists=_never)
    assert first.owned  # ... and its gateway dies here
    waiting = await keys.claim("k2", "h", "vm-2", vm_exists=_never)
    assert not waiting.owned and waiting.vm_id == "vm-1"  # within the lease: wait for it
    monkeypatch.setattr(idempotency, "CLAIM_LEASE_S", 0.0)
    taken = await keys.claim("k2", "h", "vm-3", vm_exists=_never)
    assert taken.owned and taken.vm_id == "vm-1"

    async def made(vm_id: str) -> bool:
        return True

    assert not (await keys.claim("k2", "h", "vm-4", vm_exists=made)).owned  # the VM exists
