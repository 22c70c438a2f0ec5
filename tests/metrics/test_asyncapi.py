"""The AsyncAPI 3.0 document: valid against the official schema, and lists every message."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from limiquantix.api.asyncapi import build_document, tag_of
from limiquantix.common import images, node_rpc, subjects
from limiquantix.common.commands import Command
from limiquantix.common.events import Event, event_subject

# Installed by scripts/setup.sh (npm @asyncapi/specs: the AsyncAPI initiative's JSON schemas).
SCHEMA = (Path(__file__).resolve().parents[2] / "build" / "asyncapi-specs" / "node_modules"
          / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(version="0.0.0")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SCHEMA.exists():
        pytest.fail(f"{SCHEMA} missing: run scripts/setup.sh (npm install @asyncapi/specs)")
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def test_document_validates_against_the_asyncapi_3_schema(
        document: dict[str, Any], validator: jsonschema.Draft7Validator) -> None:
    errors = [f"{e.json_path}: {e.message[:200]}" for e in validator.iter_errors(document)]
    assert errors == []


def test_the_schema_rejects_a_broken_document(
        document: dict[str, Any], validator: jsonschema.Draft7Validator) -> None:
    """The validator bites: an operation with an unknown action is refused."""
    broken = json.loads(json.dumps(document))
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording
    assert not validator.is_valid(broken)


def test_every_command_and_event_type_is_a_message_with_senders_and_receivers(
        document: dict[str, Any]) -> None:
    types = [*typing.get_args(Command), *typing.get_args(Event)]
    messages = document["components"]["messages"]
    assert {t.__name__ for t in types} <= set(messages)
    for kind in types:
        assert messages[kind.__name__]["name"] == tag_of(kind)
        channels = [key for key, ch in document["channels"].items()
                    if kind.__name__ in ch["messages"]]
        assert len(channels) == 1, kind
        actions = {op["action"] for op in document["operations"].values()
                   if op["channel"]["$ref"] == f"#/channels/{channels[0]}"}
        assert actions == {"send", "receive"}, kind


def test_event_channel_addresses_match_the_subjects_events_are_published_on(
        document: dict[str, Any]) -> None:
    for kind in typing.get_args(Event):
        fields = {name: "x1" for name in ("vm_id", "node", "image_id", "session_id")}
        event = kind(**{f: v for f, v in fields.items() if f in kind.__struct_fields__},
                     **_required_extras(kind))
        channel = next(ch for ch in document["channels"].values()
                       if kind.__name__ in ch["messages"])
        address = channel["address"]
        for param in channel["parameters"]:
            address = address.replace(f"{{{param}}}", "x1")
        assert address == event_subject(event), kind


def _required_extras(kind: type) -> dict[str, Any]:
    """Values for the other required fields (they do not change the subject)."""
    from datetime import UTC, datetime

    from limiquantix.common.vms import GuestInfo, VmError, VmState
    extras: dict[str, Any] = {"state": VmState.RUNNING, "online": True, "guest": GuestInfo(),
                              "action": "start", "error": VmError(code="x", message="x"),
                              "bytes_done": 0, "started_at": datetime.now(UTC)}
    if kind.__name__ == "ImageStateChanged":
        extras["state"] = "active"
    from limiquantix.common.vms import VmDisk, VmMedia  # the day-2 device events
    extras.update(vcpus=1, memory_mib=1024, disk_gib=1, disk_id="d", media=VmMedia(image="i"),
                  disk=VmDisk(id="d", name="d", size_gib=1, target="sdf"))
    from limiquantix.common.vms import VmSnapshot  # the snapshot, clone and publish events
    extras.update(snapshot=VmSnapshot(id="s", name="s", created_at=datetime.now(UTC)),
                  source_vm_id="v", phase="done")
    return {k: v for k, v in extras.items() if k in kind.__struct_fields__
            and k not in ("vm_id", "node", "image_id", "session_id")}


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> typing.Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in set(refs(document)):
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict), ref


def test_every_image_library_operation_is_a_request_reply_channel(
        document: dict[str, Any]) -> None:
    operations = {getattr(images, name) for name in dir(images) if name.startswith("RPC_")
                  and name != "RPC_CREATED_BY_HEADER"}
    addresses = {ch["address"] for ch in document["channels"].values()}
    assert {subjects.image_rpc(op) for op in operations} <= addresses
    assert subjects.node_rpc("__node_id__", node_rpc.CONSOLE_LOG).replace(
        "__node_id__", "{node_id}") in addresses
    for key, operation in document["operations"].items():
        if document["channels"][operation["channel"]["$ref"].rsplit("/", 1)[1]]["address"] \
                .startswith("lq.rpc."):
            assert "reply" in operation, key
