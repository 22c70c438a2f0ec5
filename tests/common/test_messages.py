"""Messages: tagged unions round-trip, old readers tolerate new fields, requests do not."""

from __future__ import annotations

import msgspec
import pytest

from limiquantix.common import commands, events, subjects
from limiquantix.common.vms import CreateVmRequest, VmState

VM_ID = "0b6c2f4e-1a2b-4c3d-8e9f-0123456789ab"


def test_commands_round_trip_through_the_tagged_union() -> None:
    sent = commands.CreateVm(command_id="c1", vm_id=VM_ID)
    wire = commands.command_encoder.encode(sent)
    assert b'"type":"vm.create"' in wire
    assert commands.command_decoder.decode(wire) == sent


def test_a_create_from_an_older_gateway_still_carrying_the_record_decodes() -> None:
    """The node reads the record from KV; the copy older gateways sent is ignored."""
    wire = b'{"type":"vm.create","command_id":"c","vm_id":"%s","vm":{"id":"x"}}' % VM_ID.encode()
    decoded = commands.command_decoder.decode(wire)
    assert isinstance(decoded, commands.CreateVm) and decoded.vm_id == VM_ID


def test_a_service_tolerates_fields_it_does_not_know_yet() -> None:
    wire = b'{"type":"vm.stop","command_id":"c","vm_id":"%s","added_in_v2":1}' % VM_ID.encode()
    decoded = commands.command_decoder.decode(wire)
    assert isinstance(decoded, commands.StopVm) and decoded.timeout_s == 60.0


def test_request_bodies_reject_unknown_fields_and_bad_names() -> None:
    with pytest.raises(msgspec.ValidationError, match="colour"):
        msgspec.json.decode(b'{"name":"a","image":"x","colour":1}', type=CreateVmRequest)
    with pytest.raises(msgspec.ValidationError, match="name"):
        msgspec.json.decode(b'{"name":"Web_1","image":"x"}', type=CreateVmRequest)


def test_events_are_published_on_subjects_named_for_their_kind() -> None:
    event = events.VmStateChanged(vm_id="0b6c", state=VmState.RUNNING)
    assert events.event_subject(event) == "lq.evt.vm.0b6c.state_changed"
    assert events.event_decoder.decode(events.event_encoder.encode(event)) == event


def test_subject_tokens_cannot_widen_a_subscription() -> None:
    for bad in ("a.b", "*", ">", "a b", ""):
        with pytest.raises(ValueError):
            subjects.vm_event(bad, "x")
    assert subjects.node_commands("node-a") == "lq.cmd.node-a"
