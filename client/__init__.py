"""A typed Python client for the Limiquantix API, in the API's own msgspec types.

``Client(url, token=...)`` (sync) and ``AsyncClient`` (aiohttp) with ``.vms``, ``.images``,
``.nodes`` and ``.events``; errors are :mod:`limiquantix.client.errors` types. See
docs/client.md.
"""

from limiquantix.client.aio import AsyncClient, AsyncEventStream
from limiquantix.client.errors import (
    ApiError,
    BadResponse,
    ClientError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServerError,
    TooLarge,
    Unauthorized,
    Unavailable,
    VmFailed,
    WaitTimeout,
)
from limiquantix.client.sse import EventStream, Message
from limiquantix.client.sync import Client
from limiquantix.client.waiting import GONE

__all__ = [
    "GONE", "ApiError", "AsyncClient", "AsyncEventStream", "BadResponse", "Client",
    "ClientError", "Conflict", "ConnectionFailed", "EventStream", "Forbidden", "InvalidRequest",
    "Message", "NotFound", "ServerError", "TooLarge", "Unauthorized", "Unavailable", "VmFailed",
    "WaitTimeout",
]
