"""``lq``'s event stream: the client library's (parser, resume by ``Last-Event-ID``, a reader
thread), with its errors as ``lq``'s one-line errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from limiquantix.cli.client import ApiClient
from limiquantix.client import sse
from limiquantix.client.sse import Message, Parser, parse_lines

__all__ = ["EventStream", "Message", "Parser", "parse_lines"]


class EventStream(sse.EventStream):
    """``GET /v1/events`` followed in a thread; :meth:`get` waits for the next message."""

    def __init__(self, client: ApiClient, query: Mapping[str, Any] | None = None,
                 last_event_id: str = "") -> None:
        super().__init__(client.raw, query, last_event_id)
        self.cli = client

    def open(self) -> EventStream:
        with self.cli.translated():
            super().open()
        return self

    def __enter__(self) -> EventStream:
        return self.open()

    def get(self, timeout_s: float | None = None) -> Message | None:
        with self.cli.translated():
            return super().get(timeout_s)
