"""The one place where the serialisation policy of every Limiquantix message is decided.

- ``frozen``: messages are values; change one with ``msgspec.structs.replace``.
- ``kw_only``: fields are always named, so adding a field never breaks a call site.
- ``omit_defaults``: defaults are not sent, which keeps messages small and lets an older
  service read a newer message (every new field must have a default).
- Messages between services tolerate unknown fields (rolling upgrades); bodies from the
  outside world derive from :class:`RequestBody`, which forbids them (typos become errors).
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec


class Model(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every message, record and event."""


class RequestBody(Model, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every HTTP request body: unknown fields are rejected."""


def utcnow() -> datetime:
    """Timezone-aware now, the only clock messages use."""
    return datetime.now(UTC)
