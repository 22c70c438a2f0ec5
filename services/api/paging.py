"""Pages of a list: ``limit`` and an opaque, stable ``cursor``.

A cursor is the sort key of the last item of a page (base64url of its JSON), so the next page
starts right after it whatever was created or deleted meanwhile: items are sorted by a key that
never changes (a VM's creation time and id, a node's id), new VMs sort last, and a deleted item
only leaves a gap. Clients must treat the cursor as opaque.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

import msgspec

from limiquantix.common.errors import InvalidRequest

T = TypeVar("T")

DEFAULT_LIMIT = 1000  # what a client that does not page gets: every list it ever saw fits
MAX_LIMIT = 1000
SortKey = tuple[str, ...]


class InvalidCursor(InvalidRequest):
    """The cursor is not one this API handed out."""

    code = "invalid_cursor"
    default_hint = "Use the next_cursor of the previous page as it is, or start without cursor."


def limit_of(query: Mapping[str, str]) -> int:
    """``?limit=``: 1 to MAX_LIMIT, DEFAULT_LIMIT when absent."""
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, not {raw!r}",
                             hint=f"Ask for at most {MAX_LIMIT} items and follow next_cursor.")
    return value


def encode_cursor(key: SortKey) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(raw: str | None) -> SortKey | None:
    """The sort key a cursor stands for (None: from the start)."""
    if not raw:
        return None
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        key = msgspec.json.decode(data, type=tuple[str, ...])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidCursor(f"not a cursor of this list: {raw[:80]!r}") from None
    if not key:
        raise InvalidCursor("empty cursor")
    return key


def page(keyed: Iterable[tuple[SortKey, T]], *, after: SortKey | None, limit: int
         ) -> tuple[list[T], str | None]:
    """Up to ``limit`` items after ``after`` from ``keyed`` (sorted by key, filtered already)
    and the cursor of the next page (None on the last page)."""
    items: list[T] = []
    it: Iterator[tuple[SortKey, T]] = iter(keyed)
    last: SortKey | None = None
    for key, item in it:
        if after is not None and key <= after:
            continue
        if len(items) == limit:  # one more exists: there is a next page
            assert last is not None
            return items, encode_cursor(last)
        items.append(item)
        last = key
    return items, None
