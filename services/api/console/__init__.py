"""Browser consoles: VNC displays of VMs through the gateway, never by reaching a node directly.

``tickets`` issues single-use tokens (hash-only in KV), ``origin`` checks who may open a
WebSocket, ``proxy`` pipes bytes between a WebSocket and the VNC TCP connection with
backpressure and limits, ``vm_watch`` ends a session when its VM stops, ``gateway`` ties one
session together (and records it as audit events) and ``routes`` exposes it all (see
its docstring for the HTTP contract and how the console page authenticates).
"""
