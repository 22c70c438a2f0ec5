"""The one way services ask each other over NATS: request/reply with typed bodies, errors in
headers the way nats.py's ``micro`` does it.

How to add an RPC
=================
::

    # 1. libs/common (e.g. node_rpc.py): the subject is a subjects.py function, the bodies are
    #    Structs whose fields all have defaults (a node's subject: allow it in nats_auth.py).
    class UptimeRequest(Model, frozen=True, kw_only=True):
        vm_id: str = ""
    class Uptime(Model, frozen=True, kw_only=True):
        seconds: float = 0.0

    # 2. The server: decode (a bad body is InvalidRequest), work, return the reply or raise a
    #    LimiquantixError subclass; unsubscribe the returned subscription when stopping.
    async def uptime(msg: Msg) -> Uptime:
        request = rpc.decode(msg.data, UptimeRequest)
        return Uptime(seconds=await seconds_up(request.vm_id))
    sub = await rpc.serve(nc, subjects.node_rpc(node, "uptime"), uptime, what="node rpc")

    # 3. The client: RemoteError (the server's typed error) or Unavailable (no answer in time).
    reply = await rpc.request(nc, subjects.node_rpc(node, "uptime"), UptimeRequest(vm_id=vm),
                              Uptime, timeout_s=5)

4. A test: server and client on a real nats-server (fixture ``nats_server``), one success and
   one error reply (tests/common/test_rpc.py shows both).

Wire format
===========
A success is the reply's JSON, without error headers. An error carries the headers
``Nats-Service-Error`` (its message, one line) and ``Nats-Service-Error-Code`` (its HTTP-like
status, e.g. ``404``), as nats.py's ``micro`` ``Request.respond_error`` sends them, and a body
that is the ``ErrorReply`` JSON (stable ``code``, ``hint``, ``details``): any NATS client
understands the headers, ours decode the body. An unexpected exception is logged here and
answered as ``internal`` (500) without its text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from limiquantix.common.errors import (
    ErrorReply,
    InvalidRequest,
    LimiquantixError,
    RemoteError,
    Unavailable,
)

log = structlog.get_logger()

T = TypeVar("T")

ERROR_HEADER = "Nats-Service-Error"  # the same names as nats.micro.request
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
_MAX_HEADER_TEXT = 512  # a header is one line; the full message is in the body

_encoder = msgspec.json.Encoder()
_error_decoder = msgspec.json.Decoder(ErrorReply)

Handler = Callable[[Msg], Awaitable[Any]]


NO_RESPONDERS_RETRIES = 3
NO_RESPONDERS_PAUSE_S = 0.05

async def request(nc: Client, subject: str, body: msgspec.Struct, reply_type: type[T], *,
                  timeout_s: float, headers: dict[str, str] | None = None) -> T:
    """Ask ``subject`` and decode the answer as ``reply_type``.

    RemoteError: the server answered an error. Unavailable: no answer within ``timeout_s``.
    """
    data = _encoder.encode(body)
    for attempt in range(NO_RESPONDERS_RETRIES + 1):
        try:
            msg = await nc.request(subject, data, timeout=timeout_s, headers=headers)
            break
        except NoRespondersError:
            # nats-server may say "no responders" just after a responder subscribed (measured
            # 2 in 60 here): a moment later the same request is answered.
            if attempt == NO_RESPONDERS_RETRIES:
                raise Unavailable(f"nothing answers on {subject}", subject=subject) from None
            await asyncio.sleep(NO_RESPONDERS_PAUSE_S * (attempt + 1))
        except NatsTimeout:
            raise Unavailable(f"no answer on {subject} within {timeout_s:g} s",
                              subject=subject) from None
    if msg.headers and ERROR_CODE_HEADER in msg.headers:
        raise RemoteError(_error_reply(msg))
    return msgspec.json.decode(msg.data, type=reply_type)


def decode(data: bytes, request_type: type[T]) -> T:
    """A request body as ``request_type``; InvalidRequest (answered 422) when it is not one."""
    try:
        return msgspec.json.decode(data, type=request_type)
    except msgspec.DecodeError as exc:  # validation errors included
        raise InvalidRequest(f"invalid {request_type.__name__}: {exc}") from None


def _error_reply(msg: Msg) -> ErrorReply:
    """The ErrorReply in the body; a foreign micro service may send only the headers."""
    try:
        return _error_decoder.decode(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        headers = msg.headers or {}
        status = headers.get(ERROR_CODE_HEADER, "500")
        return ErrorReply(code="remote_error", message=headers.get(ERROR_HEADER, ""),
                          status=int(status) if status.isdigit() else 500)


async def respond(msg: Msg, value: Any) -> None:
    """Answer ``msg`` with ``value`` (a Struct, encoded here, or bytes sent as they are)."""
    data = value if isinstance(value, bytes) else _encoder.encode(value)
    await _publish_reply(msg, data, None)


async def respond_error(msg: Msg, exc: LimiquantixError) -> None:
    """Answer ``msg`` with an error: micro's headers, the ErrorReply as the body."""
    reply = exc.to_reply()
    text = " ".join(reply.message.split())[:_MAX_HEADER_TEXT]  # one header line
    await _publish_reply(msg, _encoder.encode(reply),
                         {ERROR_HEADER: text, ERROR_CODE_HEADER: str(reply.status)})


async def _publish_reply(msg: Msg, data: bytes, headers: dict[str, str] | None) -> None:
    if not msg.reply:  # a publish, not a request: nobody waits for an answer
        return
    # Msg.respond() would echo the request's headers; micro publishes on the client instead.
    await msg._client.publish(msg.reply, data, headers=headers)


async def serve(nc: Client, subject: str, handler: Handler, *, queue: str = "",
                what: str = "rpc", concurrent: bool = False) -> Subscription:
    """Answer requests on ``subject`` (a wildcard is fine) with ``handler``'s result.

    A ``LimiquantixError`` is answered as that error; anything else is logged (``what``
    names the service) and answered as ``internal``. nats.py runs one subscription's callbacks
    one after the other: ``concurrent`` answers each request in its own task instead (for
    handlers that wait, e.g. a command running in a guest), tasks held until they end.
    """
    running: set[asyncio.Task[None]] = set()

    async def answer(msg: Msg) -> None:
        try:
            value = await handler(msg)
        except LimiquantixError as exc:
            await respond_error(msg, exc)
            return
        except Exception:
            log.exception(f"{what} failed", subject=msg.subject)
            await respond_error(msg, LimiquantixError(f"internal error in {what}"))  # code internal
            return
        await respond(msg, value)

    async def dispatch(msg: Msg) -> None:
        task = asyncio.create_task(answer(msg))
        running.add(task)
        task.add_done_callback(running.discard)

    return await nc.subscribe(subject, queue=queue, cb=dispatch if concurrent else answer)
