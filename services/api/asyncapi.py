"""AsyncAPI 3.0 document of the NATS side, built from the msgspec schemas of commands and events.

Served at ``GET /v1/asyncapi.json`` (public, like the OpenAPI document: it holds no secrets).
Every tagged type of :data:`limiquantix.common.commands.Command` and
:data:`limiquantix.common.events.Event` is a message; each has a channel whose address is the
subject it travels on (``{vm_id}``-style parameters), with the services that send and receive it
as operations. Request/reply operations (``common.rpc``: the image library's, a node's
``console_log``) are channels too, with a ``reply`` whose channel is the requester's inbox.
Subjects come from :mod:`limiquantix.common.subjects` (built there with placeholder tokens
turned into ``{parameters}``), so the document cannot drift from what services publish.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from limiquantix import __version__
from limiquantix.api.openapi import OpenApiPart, Operation
from limiquantix.common import guest_rpc, images, node_rpc, subjects
from limiquantix.common.commands import Command
from limiquantix.common.errors import ErrorReply
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
    "vm.snapshot": Flow(_at(subjects.vm_event, "vm_id", "snapshot"), _VM, (NODE,), (API,),
                        "A snapshot was created, reverted to, deleted, or failed"),
    "vm.cloned": Flow(_at(subjects.vm_event, "vm_id", "cloned"), _VM, (NODE,), (API,),
                      "A clone's disk was made from its source VM"),
    "vm.publish_progress": Flow(_at(subjects.vm_event, "vm_id", "publish_progress"), _VM,
                                (NODE,), (API,), "Publishing a VM as an image: phase, progress"),
    "vm.templated": Flow(_at(subjects.vm_event, "vm_id", "templated"), _VM, (API,), (API,),
                         "A stopped VM became a template (the base of linked clones)"),
    "vm.resized": Flow(_at(subjects.vm_event, "vm_id", "resized"), _VM, (NODE,), (API,),
                       "A VM's domain got new vCPUs, memory or disk size (live or at next start)"),
    "vm.disk_attached": Flow(_at(subjects.vm_event, "vm_id", "disk_attached"), _VM, (NODE,),
                             (API,), "An extra disk was made and attached"),
    "vm.disk_detached": Flow(_at(subjects.vm_event, "vm_id", "disk_detached"), _VM, (NODE,),
                             (API,), "An extra disk was detached and deleted"),
    "vm.media_inserted": Flow(_at(subjects.vm_event, "vm_id", "media_inserted"), _VM, (NODE,),
                              (API,), "An ISO is in the VM's media drive"),
    "vm.media_ejected": Flow(_at(subjects.vm_event, "vm_id", "media_ejected"), _VM, (NODE,),
                             (API,), "The VM's media drive is empty again"),
    "vm.phase": Flow(_at(subjects.vm_event, "vm_id", "phase"), _VM, (NODE,), (API,),
                     "A boot reached a readiness phase (defined ... ssh, ready)"),
    "vm.addresses_changed": Flow(_at(subjects.vm_event, "vm_id", "addresses_changed"), _VM,
                                 (NODE,), (API,), "The guest's IP addresses changed"),
    "vm.agent_changed": Flow(_at(subjects.vm_event, "vm_id", "agent_changed"), _VM, (NODE,),
                             (API,), "The VM's QEMU guest agent connected or disconnected"),
    "vm.guest_access": Flow(_at(subjects.vm_event, "vm_id", "guest_access"), _VM, (API,),
                            (API,), "Audit: exec, file read/write or password set in a guest"),
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


@dataclasses.dataclass(frozen=True)
class Rpc:
    """One request/reply operation (core NATS, ``common.rpc``): its subject and body types."""

    key: str
    address: str
    parameters: dict[str, str]
    request: type
    reply: type
    senders: tuple[str, ...]
    receiver: str
    description: str


_IMAGES_RPC_SENDERS = (API,)
RPCS: tuple[Rpc, ...] = (
    Rpc("imagesList", subjects.image_rpc(images.RPC_LIST), {}, images.ListImages,
        images.ImageList, _IMAGES_RPC_SENDERS, LIBRARY, "List images"),
    Rpc("imagesGet", subjects.image_rpc(images.RPC_GET), {}, images.ImageRef, images.ImageRecord,
        (API, NODE), LIBRARY, "One image (nodes: where to download it from)"),
    Rpc("imagesImport", subjects.image_rpc(images.RPC_IMPORT), {}, images.CreateImageRequest,
        images.ImageRecord, _IMAGES_RPC_SENDERS, LIBRARY, "Start an import from a URL"),
    Rpc("imagesCreateUpload", subjects.image_rpc(images.RPC_CREATE_UPLOAD), {},
        images.CreateImageRequest, images.ImageRecord, _IMAGES_RPC_SENDERS, LIBRARY,
        f"A record to upload into (header {images.RPC_CREATED_BY_HEADER}: the uploader)"),
    Rpc("imagesDelete", subjects.image_rpc(images.RPC_DELETE), {}, images.ImageRef,
        images.ImageDeleted, _IMAGES_RPC_SENDERS, LIBRARY, "Delete an image"),
    Rpc("nodeConsoleLog", _at(subjects.node_rpc, "node_id", node_rpc.CONSOLE_LOG),
        {"node_id": "The node that runs the VM"}, node_rpc.ConsoleLogRequest,
        node_rpc.ConsoleLogReply, (API,), NODE, "The tail of a VM's serial console log"),
    *(Rpc(key, _at(subjects.node_rpc, "node_id", op), {"node_id": "The node that runs the VM"},
          request, reply, (API,), NODE, what)
      for key, op, request, reply, what in (
          ("nodeGuestExec", guest_rpc.GUEST_EXEC, guest_rpc.GuestExecCall,
           guest_rpc.GuestExecReply,
           "Run a program in a guest through its agent"),
          ("nodeGuestFileOpen", guest_rpc.GUEST_FILE_OPEN, guest_rpc.FileOpenCall,
           guest_rpc.FileOpened, "Open a file in a guest"),
          ("nodeGuestFileRead", guest_rpc.GUEST_FILE_READ, guest_rpc.FileReadCall,
           guest_rpc.FileChunk, "Read a chunk (<= 64 KiB, base64)"),
          ("nodeGuestFileWrite", guest_rpc.GUEST_FILE_WRITE, guest_rpc.FileWriteCall,
           guest_rpc.FileWrote, "Write a chunk (<= 64 KiB, base64)"),
          ("nodeGuestFileClose", guest_rpc.GUEST_FILE_CLOSE, guest_rpc.FileCloseCall,
           guest_rpc.Done, "Close a file (then chmod/chown when asked)"),
          ("nodeGuestPassword", guest_rpc.GUEST_PASSWORD, guest_rpc.GuestPasswordCall,
           guest_rpc.Done, "Set a guest user's password"),
      )),
)
_RPC_ERROR = ("Errors: headers Nats-Service-Error / Nats-Service-Error-Code (as nats.py micro "
              "sends them) and an ErrorReply body.")


def tag_of(kind: type) -> str:
    """A command's or event's type tag (``vm.create``); a plain body's class name."""
    tag = kind.__struct_config__.tag  # type: ignore[attr-defined]
    return str(tag) if tag is not None else kind.__name__


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


def _rpc(rpc: Rpc, channels: dict[str, Any], operations: dict[str, Any]) -> None:
    """The request channel, its reply channel (the requester's inbox) and the operations."""
    reply_key = f"{rpc.key}Reply"
    replies = [rpc.reply, ErrorReply]
    channels[rpc.key] = _channel(Flow(rpc.address, rpc.parameters, (), (), rpc.description),
                                 [rpc.request])
    channels[reply_key] = {
        "address": None,  # the requester's inbox (_INBOX.<its public key>...): dynamic
        "description": f"Reply to {rpc.key}. {_RPC_ERROR}",
        "messages": {t.__name__: {"$ref": f"#/components/messages/{t.__name__}"}
                     for t in replies},
    }
    reply = {"channel": {"$ref": f"#/channels/{reply_key}"},
             "messages": [{"$ref": f"#/channels/{reply_key}/messages/{t.__name__}"}
                          for t in replies]}
    request = [{"$ref": f"#/channels/{rpc.key}/messages/{rpc.request.__name__}"}]
    for action, services in (("send", rpc.senders), ("receive", (rpc.receiver,))):
        for service in services:
            operations[f"{_name(service.replace('-', '_'))}_{action}_{rpc.key}"] = {
                "action": action, "channel": {"$ref": f"#/channels/{rpc.key}"},
                "summary": f"{service} {'asks' if action == 'send' else 'answers'} {rpc.key}",
                "tags": [{"name": service}], "messages": request, "reply": reply,
            }


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
    rpc_types = list(dict.fromkeys(t for rpc in RPCS for t in (rpc.request, rpc.reply)))
    every = commands + events + rpc_types + [ErrorReply]
    refs, schemas = msgspec.json.schema_components(every, ref_template=_REF_TEMPLATE)
    ref_of = dict(zip(every, refs, strict=True))
    channels: dict[str, Any] = {"nodeCommands": _channel(COMMAND_FLOW, commands)}
    operations = _operations("nodeCommands", COMMAND_FLOW, commands)
    messages = {t.__name__: _message(t, ref_of[t], stream=subjects.COMMANDS_STREAM)
                for t in commands}
    for kind in events:
        key, flow = _name(tag_of(kind)), EVENT_FLOWS[tag_of(kind)]
        channels[key] = _channel(flow, [kind])
        operations.update(_operations(key, flow, [kind]))
        messages[kind.__name__] = _message(kind, ref_of[kind], stream=subjects.EVENTS_STREAM)
    for rpc in RPCS:
        _rpc(rpc, channels, operations)
    for kind in [*rpc_types, ErrorReply]:
        messages[kind.__name__] = _message(kind, ref_of[kind], stream="request-reply")
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Limiquantix NATS messages", "version": version,
            "description": "Commands (JetStream stream "
                           f"{subjects.COMMANDS_STREAM}), events (stream "
                           f"{subjects.EVENTS_STREAM}; the stream sequence is the SSE id) and "
                           "request/reply operations (core NATS) as they travel between the "
                           "gateway, node agents and the image library. Payloads are JSON; "
                           "unknown fields are tolerated between services.",
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


@functools.cache
def _encoded_document() -> bytes:
    return msgspec.json.encode(build_document())


def setup(app: web.Application) -> None:
    """Register GET /v1/asyncapi.json (built once per process: it depends only on the code;
    each app decodes its own copy, ~1 ms instead of ~25 ms to build)."""
    app[ASYNCAPI_DOC] = msgspec.json.decode(_encoded_document())
    app.router.add_get("/v1/asyncapi.json", get_asyncapi)
