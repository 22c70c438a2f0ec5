"""Typed application state of the gateway: every shared object behind a ``web.AppKey``.

Route modules (ours and the helpers': images, console, web UI) read what they need with
``request.app[KEY]``; nothing lives in module globals and no string keys are used.
"""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from limiquantix.api.kv_view import NodeView, VmView
from limiquantix.common.api_tokens import ApiTokenRecord
from limiquantix.common.kv_records import KvRecords
from limiquantix.common.settings import Settings
from limiquantix.common.vm_store import VmStore

SETTINGS = web.AppKey("settings", Settings)
API_TOKEN = web.AppKey("api_token", str)
NATS = web.AppKey("nats", Client)
JETSTREAM = web.AppKey("jetstream", JetStreamContext)
VM_STORE = web.AppKey("vm_store", VmStore)
VM_VIEW = web.AppKey("vm_view", VmView)  # watched lq_vms, also fed by our own writes
NODE_VIEW = web.AppKey("node_view", NodeView)  # watched lq_nodes (liveness by TTL)
IDEMPOTENCY_KV = web.AppKey("idempotency_kv", KeyValue)
# lq_tokens: named API tokens (hashes only)
TOKENS: web.AppKey[KvRecords[ApiTokenRecord]] = web.AppKey("tokens")
LIBRARY_SECRET = web.AppKey("library_secret", bytes)  # signs image library requests
# Set when the server begins shutting down: long-lived responses (SSE) end on it.
STOPPING = web.AppKey("stopping", asyncio.Event)
# Open WebSockets (console sessions) closed with 1001 in on_shutdown; add yours here.
WEBSOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("websockets")
