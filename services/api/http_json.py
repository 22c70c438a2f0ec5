"""JSON in and out of handlers with msgspec: one decoder per body type, built once."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from limiquantix.api.problems import validation_error
from limiquantix.common.errors import InvalidRequest

T = TypeVar("T")

_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_encoder = msgspec.json.Encoder()


async def decode_body(request: web.Request, body_type: type[T]) -> T:
    """The request body as ``body_type``; 422 ``invalid_request`` (with the JSON path) if not.

    A body is required (an empty one used to mean "all defaults": an empty cloud-init update
    wiped keys and password), and a key given twice is refused rather than the last one winning.
    """
    decoder = _decoders.get(body_type)
    if decoder is None:
        decoder = _decoders[body_type] = msgspec.json.Decoder(body_type)
    raw = await request.read()
    if not raw.strip():
        raise InvalidRequest("a JSON body is required",
                             hint="Send a JSON object with Content-Type: application/json.")
    try:
        value = decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise validation_error(exc) from None
    _refuse_duplicate_keys(raw)
    return value  # type: ignore[no-any-return]


def _reject_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise InvalidRequest(f"the key {key!r} is given twice in one JSON object",
                                 hint="Send each field once.")
        seen.add(key)
    return dict(pairs)


def _refuse_duplicate_keys(raw: bytes) -> None:
    """msgspec keeps the last of duplicate keys; the stdlib parser lets us see them (bodies are
    small and already valid JSON here)."""
    json.loads(raw, object_pairs_hook=_reject_pairs)


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
