"""Server-Sent Events: a pure line parser, and a followed stream that reconnects by id.

The parser is shared by :class:`EventStream` (sync, a thread) and the async client.

The stream reads in a background thread and hands messages over a queue, so the caller can wait
with a deadline (``--wait --timeout``) without ever leaving the socket in a half-read state.
On a dropped connection it reconnects with ``Last-Event-ID``: no event is lost or repeated.
"""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from limiquantix.client.errors import BadResponse, ClientError, ConnectionFailed
from limiquantix.client.transport import Transport
from limiquantix.common.events import Event, event_decoder

RECONNECT_ATTEMPTS = 5
DEFAULT_RETRY_S = 1.0


@dataclass(frozen=True)
class Message:
    """One dispatched SSE message."""

    id: str
    event: str
    data: str

    def decoded(self) -> Event | None:
        """The shared event schema, or None for a kind this ``lq`` does not know."""
        try:
            return event_decoder.decode(self.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    def raw(self) -> Any:
        try:
            return msgspec.json.decode(self.data)
        except msgspec.DecodeError:
            return self.data


class Parser:
    """Feeds lines (without their line ending) and yields messages, per the WHATWG rules."""

    def __init__(self) -> None:
        self.last_id = ""
        self.retry_s: float | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Message | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment: keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_s = int(value) / 1000
        return None

    def _dispatch(self) -> Message | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return Message(self.last_id, event or "message", "\n".join(data))


def parse_lines(lines: Iterable[str]) -> Iterator[Message]:
    """Messages from an iterable of lines (tests, and anything already in memory)."""
    parser = Parser()
    for line in lines:
        message = parser.feed(line.rstrip("\r\n"))
        if message is not None:
            yield message


class _Closed:
    """Put on the queue when the stream ends for good (after the error, if any)."""


class EventStream:
    """``GET /v1/events`` followed in a thread; :meth:`get` waits for the next message."""

    def __init__(self, client: Transport, query: Mapping[str, Any] | None = None,
                 last_event_id: str = "") -> None:
        self.client = client
        self.query = dict(query or {})
        self.parser = Parser()
        self.parser.last_id = last_event_id
        self._queue: queue.Queue[Message | ClientError | _Closed] = queue.Queue()
        self._closing = threading.Event()
        self._sock: socket.socket | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._thread: threading.Thread | None = None

    def open(self) -> EventStream:
        """Connect now (errors raise here), then read in the background; opening an open
        stream (``with client.events.stream()``) keeps its one connection."""
        if self._thread is not None:
            return self
        response = self._connect()
        self._thread = threading.Thread(target=self._run, args=(response,), daemon=True,
                                        name="lq-sse")
        self._thread.start()
        return self

    def __enter__(self) -> EventStream:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> http.client.HTTPResponse:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.parser.last_id:
            headers["Last-Event-ID"] = self.parser.last_id
        conn, response, sock = self.client.open("GET", "/v1/events", query=self.query,
                                                headers=headers, timeout_s=None)
        content_type = response.getheader("Content-Type", "")
        if not content_type.startswith("text/event-stream"):
            conn.close()
            raise BadResponse(f"/v1/events answered {content_type or 'no content type'}, "
                              "not an event stream")
        self._conn, self._sock = conn, sock
        return response

    def _run(self, response: http.client.HTTPResponse) -> None:
        attempts = 0
        while not self._closing.is_set():
            try:
                self._read(response)
                attempts = 0
            except Exception:  # any read failure: the connection is gone
                pass
            finally:
                with contextlib.suppress(Exception):
                    response.close()
            if self._closing.is_set():
                break
            attempts += 1  # the server went away: resume after the last id we saw
            if attempts > RECONNECT_ATTEMPTS:
                self._queue.put(self.client.unreachable(ConnectionError("event stream lost")))
                break
            time.sleep(self.parser.retry_s or DEFAULT_RETRY_S)
            try:
                response = self._connect()
            except ConnectionFailed:
                continue
            except ClientError as exc:  # an answer (401, 404...): retrying will not help
                self._queue.put(exc)
                break
        self._queue.put(_Closed())

    def _read(self, response: http.client.HTTPResponse) -> None:
        while not self._closing.is_set():
            raw = response.readline()
            if not raw:
                return
            message = self.parser.feed(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            if message is not None:
                self._queue.put(message)

    def get(self, timeout_s: float | None = None) -> Message | None:
        """The next message; None when ``timeout_s`` passes first. Stream errors raise."""
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, ClientError):
            raise item
        if isinstance(item, _Closed):
            self._queue.put(item)  # stay closed for later calls
            raise self.client.unreachable(ConnectionError("event stream closed"))
        return item

    def __iter__(self) -> Iterator[Message]:
        while True:
            message = self.get()
            if message is not None:
                yield message

    def close(self) -> None:
        """Stop reading: shutting the socket down wakes the thread blocked in recv, and the
        thread closes its own response (closing it from here races with the read)."""
        self._closing.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._conn is not None:
            self._conn.close()
