"""JSON in and out of handlers with msgspec: one decoder per body type, built once."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from limiquantix.api.problems import validation_error

T = TypeVar("T")

_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_encoder = msgspec.json.Encoder()


async def decode_body(request: web.Request, body_type: type[T]) -> T:
    """The request body as ``body_type``; 422 ``invalid_request`` (with the JSON path) if not."""
    decoder = _decoders.get(body_type)
    if decoder is None:
        decoder = _decoders[body_type] = msgspec.json.Decoder(body_type)
    raw = await request.read()
    try:
        return decoder.decode(raw or b"{}")  # type: ignore[no-any-return]
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise validation_error(exc) from None


def complete(value: Any) -> Any:
    """``value`` with every Struct field present, defaults included.

    Messages omit defaults on the wire between services (``base.Model``); API clients get the
    whole record instead (a ``pending`` VM shows ``"state": "pending"``, an absent VNC ``null``).
    """
    if isinstance(value, msgspec.Struct):
        config = value.__struct_config__
        out: dict[str, Any] = {}
        if config.tag_field is not None:
            out[config.tag_field] = config.tag
        for name in value.__struct_fields__:
            out[name] = complete(getattr(value, name))
        return out
    if isinstance(value, (list, tuple)):
        return [complete(item) for item in value]
    if isinstance(value, dict):
        return {key: complete(item) for key, item in value.items()}
    return value


def encode(value: Any) -> bytes:
    """JSON of ``value`` as API clients see it (defaults included)."""
    return _encoder.encode(complete(value))


def json_response(
    value: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response encoded by msgspec (Structs, datetimes, enums)."""
    return web.Response(
        body=encode(value), status=status, content_type="application/json",
        headers=headers,
    )
