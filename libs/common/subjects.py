"""Every NATS subject, stream, consumer and KV bucket name Limiquantix uses, built here only.

Reference: docs/architecture.md ("Subjects"). Tokens that come from users or ids are checked so a
'.' , '*', '>' or space can never widen a subscription.
"""

from __future__ import annotations

import re

PREFIX = "lq"

COMMANDS_STREAM = "LQ_COMMANDS"
EVENTS_STREAM = "LQ_EVENTS"

VMS_BUCKET = "lq_vms"  # VM id -> VmRecord
VM_NAMES_BUCKET = "lq_vm_names"  # VM name -> VM id (names are unique)
NODES_BUCKET = "lq_nodes"  # node id -> NodeStatus, TTL: gone when heartbeats stop
IDEMPOTENCY_BUCKET = "lq_idempotency"  # sha256(key) -> VM id and body hash, 24 h TTL
IMAGES_BUCKET = "lq_images"  # image id -> ImageRecord
IMAGE_FILES_BUCKET = "lq_image_files"  # object store: image id -> its file (jetstream store)
CONSOLE_TOKENS_BUCKET = "lq_console_tokens"  # sha256(token) -> ConsoleTicket, TTL
TOKENS_BUCKET = "lq_tokens"  # API token id -> ApiTokenRecord (sha256 of the token)
WEBHOOKS_BUCKET = "lq_webhooks"  # webhook id -> WebhookRecord (holds its secret: gateway only)
WEBHOOK_DELIVERIES_BUCKET = "lq_webhook_deliveries"  # webhook id -> attempts (per-key history)
ALLOCATIONS_BUCKET = "lq_allocations"  # node id -> NodeAllocation (capacity reserved, CAS)

IMAGE_LIBRARY_QUEUE = "image-library"

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _token(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"not a valid subject token: {value!r}")
    return value


# Commands (JetStream, work queue): one durable consumer per node filters on its own subjects.
def node_commands(node_id: str) -> str:
    """Subject of every command for one node."""
    return f"{PREFIX}.cmd.{_token(node_id)}"


def all_commands() -> str:
    return f"{PREFIX}.cmd.*"


def node_dead_letters(node_id: str) -> str:
    """Core subject where a node republishes commands it cannot decode (then terminates them).

    Headers say why (``Lq-Reason``) and which stream message it was (``Lq-Stream-Seq``).
    """
    return f"{PREFIX}.dlq.cmd.{_token(node_id)}"


def all_dead_letters() -> str:
    return f"{PREFIX}.dlq.>"


def node_consumer(node_id: str) -> str:
    """Durable consumer name of a node agent."""
    return f"node-{_token(node_id)}"


def webhook_consumer(webhook_id: str) -> str:
    """Durable consumer on ``LQ_EVENTS`` that feeds one webhook (shared by every gateway)."""
    return f"webhook-{_token(webhook_id)}"


# Events (JetStream, limits retention, replayable).
def vm_event(vm_id: str, kind: str) -> str:
    return f"{PREFIX}.evt.vm.{_token(vm_id)}.{_token(kind)}"


def vm_events(vm_id: str = "*") -> str:
    """Filter for every event of one VM (or of all VMs)."""
    return f"{PREFIX}.evt.vm.{vm_id if vm_id == '*' else _token(vm_id)}.>"


def node_event(node_id: str, kind: str) -> str:
    return f"{PREFIX}.evt.node.{_token(node_id)}.{_token(kind)}"


def node_events(node_id: str = "*") -> str:
    """Filter for every event of one node (or of all nodes)."""
    return f"{PREFIX}.evt.node.{node_id if node_id == '*' else _token(node_id)}.>"


def image_events_of_kind(kind: str) -> str:
    """Filter for one kind of event of every image (nodes publish only ``progress``)."""
    return f"{PREFIX}.evt.image.*.{_token(kind)}"


def image_event(image_id: str, kind: str) -> str:
    return f"{PREFIX}.evt.image.{_token(image_id)}.{_token(kind)}"


def image_events(image_id: str = "*") -> str:
    return f"{PREFIX}.evt.image.{image_id if image_id == '*' else _token(image_id)}.>"


def console_event(vm_id: str, kind: str) -> str:
    return f"{PREFIX}.evt.console.{_token(vm_id)}.{_token(kind)}"


def console_events(vm_id: str = "*") -> str:
    """Filter for the console audit events of one VM (or of all VMs)."""
    return f"{PREFIX}.evt.console.{vm_id if vm_id == '*' else _token(vm_id)}.>"


def all_events() -> str:
    return f"{PREFIX}.evt.>"


# Request/reply (core NATS): the image library serves a queue group; nodes answer for themselves.
def image_rpc(operation: str) -> str:
    """Image library operations: list, get, import, create_upload, delete, ..."""
    return f"{PREFIX}.rpc.images.{_token(operation)}"


def image_rpc_all() -> str:
    return f"{PREFIX}.rpc.images.*"


def node_rpc(node_id: str, operation: str) -> str:
    """Node agent queries: console_log, ..."""
    return f"{PREFIX}.rpc.node.{_token(node_id)}.{_token(operation)}"


def node_rpc_all(node_id: str) -> str:
    return f"{PREFIX}.rpc.node.{_token(node_id)}.*"
