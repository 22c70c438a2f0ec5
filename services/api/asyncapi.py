"""AsyncAPI 3.0 document of the NATS side, built from the msgspec schemas of commands and events.

Served at ``GET /v1/asyncapi.json`` (public, like the OpenAPI document: it holds no secrets).
Every tagged type of :data:`limiquantix.common.commands.Command` and
:data:`limiquantix.common.events.Event` is a message; each has a channel whose address is the
subject it travels on (``{vm_id}``-style parameters), with the services that send and receive it
as operations. Subjects come from :mod:`limiquantix.common.subjects` (built there with the
parameter names as tokens), so the document cannot drift from what services publish.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from limiquantix import __version__
from limiquantix.api.openapi import OpenApiPart, Operation
from limiquantix.common import subjects
from limiquantix.common.commands import Command
from limiquantix.common.events import Event

ASYNCAPI_VERSION = "3.0.0"
_REF_TEMPLATE = "#/components/schemas/{name}"

API, NODE, LIBRARY = "api", "node-agent", "image-library"


@dataclasses.dataclass(frozen=True)
class Flow:
    """Who sends and who receives the messages of one channel."""

    address: str
    parameters: dict[str, str]  # name -> description
    senders: tuple[str, ...]
    receivers: tuple[str, ...]
    description: str


def _at(subject: Callable[..., str], param: str, *rest: str) -> str:
    """The subject built by ``subjects`` with ``{param}`` in the parameter's place."""
    return subject(f"__{param}__", *rest).replace(f"__{param}__", f"{{{param}}}")


_VM = {"vm_id": "The VM's id"}
# Event tag -> its flow. A new event type without a line here fails the completeness test.
EVENT_FLOWS: dict[str, Flow] = {
    "vm.state_changed": Flow(_at(subjects.vm_event, "vm_id", "state_changed"), _VM, (API, NODE),
                             (API,), "A VM's recorded state moved (SSE, console sessions)"),
    "vm.guest_ready": Flow(_at(subjects.vm_event, "vm_id", "guest_ready"), _VM, (NODE,), (API,),
                           "cloud-init finished in the guest"),
    "vm.action_failed": Flow(_at(subjects.vm_event, "vm_id", "action_failed"), _VM, (NODE,),
                             (API,), "A command could not be carried out"),
    "vm.deleted": Flow(_at(subjects.vm_event, "vm_id", "deleted"), _VM, (API, NODE), (API,),
                       "A VM and its files are gone"),
    "node.state_changed": Flow(_at(subjects.node_event, "node_id", "state_changed"),
                               {"node_id": "The node's id"}, (NODE,), (API,),
                               "A node agent came online or is going away cleanly"),
    "image.state_changed": Flow(_at(subjects.image_event, "image_id", "state_changed"),
                                {"image_id": "The image's id"}, (LIBRARY,), (API,),
                                "An image's state moved"),
    "image.progress": Flow(_at(subjects.image_event, "image_id", "progress"),
                           {"image_id": "The image's id"}, (LIBRARY, NODE), (API,),
                           "Bytes of an import, upload or node cache download"),
    "console.session_started": Flow(_at(subjects.console_event, "vm_id", "session_started"), _VM,
                                    (API,), (API,), "Console audit: a session opened"),
    "console.session_ended": Flow(_at(subjects.console_event, "vm_id", "session_ended"), _VM,
                                  (API,), (API,), "Console audit: a session ended"),
}
COMMAND_FLOW = Flow(_at(subjects.node_commands, "node_id"),
                    {"node_id": "The node that runs the VM"}, (API,), (NODE,),
                    "Commands for one node (JetStream work queue "
                    f"{subjects.COMMANDS_STREAM}; Nats-Msg-Id is the command_id)")


def tag_of(kind: type) -> str:
    return str(kind.__struct_config__.tag)  # type: ignore[attr-defined]


def _name(tag: str) -> str:
    """``vm.state_changed`` -> ``vmStateChanged`` (channel and operation keys)."""
    head, *rest = tag.replace(".", "_").split("_")
    return head + "".join(part.title() for part in rest)


def _channel(flow: Flow, messages: list[type]) -> dict[str, Any]:
    return {
        "address": flow.address,
        "description": flow.description,
        "parameters": {name: {"description": text} for name, text in flow.parameters.items()},
        "messages": {t.__name__: {"$ref": f"#/components/messages/{t.__name__}"}
                     for t in messages},
    }


def _operations(key: str, flow: Flow, messages: list[type]) -> dict[str, Any]:
    refs = [{"$ref": f"#/channels/{key}/messages/{t.__name__}"} for t in messages]
    ops: dict[str, Any] = {}
    for action, services in (("send", flow.senders), ("receive", flow.receivers)):
        for service in services:
            ops[f"{_name(service.replace('-', '_'))}_{action}_{key}"] = {
                "action": action, "channel": {"$ref": f"#/channels/{key}"},
                "summary": f"{service} {action}s {key}", "tags": [{"name": service}],
                "messages": refs,
            }
    return ops


def _message(kind: type, ref: dict[str, Any], *, stream: str) -> dict[str, Any]:
    doc = (kind.__doc__ or "").strip().splitlines()
    return {"name": tag_of(kind), "title": kind.__name__, "contentType": "application/json",
            "summary": doc[0] if doc else tag_of(kind), "payload": ref,
            "tags": [{"name": stream}]}


def _ids_as_text(schema: Any) -> Any:
    """msgspec emits OpenAPI-style ``discriminator`` objects; AsyncAPI's Schema Object wants a
    property name there (a string)."""
    if isinstance(schema, dict):
        out = {k: _ids_as_text(v) for k, v in schema.items()}
        if isinstance(out.get("discriminator"), dict):
            out["discriminator"] = out["discriminator"]["propertyName"]
        return out
    if isinstance(schema, list):
        return [_ids_as_text(v) for v in schema]
    return schema


def build_document(*, version: str = __version__) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every command and event."""
    commands = list(typing.get_args(Command))
    events = list(typing.get_args(Event))
    refs, schemas = msgspec.json.schema_components(commands + events, ref_template=_REF_TEMPLATE)
    ref_of = dict(zip(commands + events, refs, strict=True))
    channels: dict[str, Any] = {"nodeCommands": _channel(COMMAND_FLOW, commands)}
    operations = _operations("nodeCommands", COMMAND_FLOW, commands)
    messages = {t.__name__: _message(t, ref_of[t], stream=subjects.COMMANDS_STREAM)
                for t in commands}
    for kind in events:
        key, flow = _name(tag_of(kind)), EVENT_FLOWS[tag_of(kind)]
        channels[key] = _channel(flow, [kind])
        operations.update(_operations(key, flow, [kind]))
        messages[kind.__name__] = _message(kind, ref_of[kind], stream=subjects.EVENTS_STREAM)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Limiquantix NATS messages", "version": version,
            "description": "Commands (JetStream stream "
                           f"{subjects.COMMANDS_STREAM}) and events (stream "
                           f"{subjects.EVENTS_STREAM}; the stream sequence is the SSE id) as "
                           "they travel between the gateway, node agents and the image "
                           "library. Payloads are JSON; unknown fields are tolerated.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _ids_as_text(schemas)},
    }


ASYNCAPI_DOC = web.AppKey("asyncapi_doc", dict)


async def get_asyncapi(request: web.Request) -> web.Response:
    """The AsyncAPI document."""
    return web.json_response(request.app[ASYNCAPI_DOC])


OPENAPI = OpenApiPart(tag="meta", operations=(
    Operation(method="GET", path="/v1/asyncapi.json",
              summary="AsyncAPI 3.0 document of the NATS commands and events", public=True),
))


def setup(app: web.Application) -> None:
    """Register GET /v1/asyncapi.json (built once: it depends only on the code)."""
    app[ASYNCAPI_DOC] = build_document()
    app.router.add_get("/v1/asyncapi.json", get_asyncapi)
