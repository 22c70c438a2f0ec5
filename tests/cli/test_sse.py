"""SSE parsing, and following a real HTTP event stream that drops and resumes by id."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from limiquantix.cli.client import ApiClient
from limiquantix.cli.config import Config
from limiquantix.cli.errors import ApiError
from limiquantix.cli.sse import EventStream, Parser, parse_lines
from limiquantix.common.events import VmStateChanged, event_encoder
from limiquantix.common.vms import VmState


def test_messages_are_dispatched_on_blank_lines_with_id_and_type() -> None:
    lines = ["retry: 2000", ": connected", "", "id: 7", "event: vm.state_changed",
             'data: {"a": 1}', "", "id: 8", "data: x", ""]
    messages = list(parse_lines(lines))
    assert [(m.id, m.event, m.data) for m in messages] == [
        ("7", "vm.state_changed", '{"a": 1}'), ("8", "message", "x")]


def test_multi_line_data_joins_with_newlines_and_crlf_is_stripped() -> None:
    messages = list(parse_lines(["data: one\r\n", "data:two\r\n", "\r\n"]))
    assert messages[0].data == "one\ntwo"


def test_the_last_id_persists_and_retry_is_read() -> None:
    parser = Parser()
    for line in ["id: 41", "data: a", "", "retry: 1500", "data: b", ""]:
        parser.feed(line)
    assert parser.last_id == "41"
    assert parser.retry_s == 1.5


def test_comment_only_blocks_dispatch_nothing() -> None:
    assert list(parse_lines([": keep-alive", "", ": keep-alive", ""])) == []


def test_known_events_decode_into_the_shared_schema_and_unknown_kinds_do_not() -> None:
    event = VmStateChanged(vm_id="v1", name="web", state=VmState.RUNNING,
                           previous=VmState.STARTING)
    frame = ["id: 3", "event: vm.state_changed", "data: " + event_encoder.encode(event).decode(),
             "", "id: 4", "event: vm.teleported", 'data: {"type": "vm.teleported"}', ""]
    known, unknown = parse_lines(frame)
    decoded = known.decoded()
    assert isinstance(decoded, VmStateChanged) and decoded.state == VmState.RUNNING
    assert unknown.decoded() is None
    assert unknown.raw() == {"type": "vm.teleported"}


class _Sse(BaseHTTPRequestHandler):
    """Sends events 1..3 then drops the connection; a resumed request gets what follows."""

    seen_last_ids: list[str] = []

    def do_GET(self) -> None:
        if "bad" in self.path:
            body = b'{"code": "vm_not_found", "detail": "no VM x", "hint": "List VMs."}'
            self.send_response(404)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        last = self.headers.get("Last-Event-ID", "")
        type(self).seen_last_ids.append(last)
        start = int(last) + 1 if last else 1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"retry: 50\n: connected\n\n")
        for seq in range(start, min(start + 3, 7)):
            self.wfile.write(f"id: {seq}\nevent: test\ndata: {seq}\n\n".encode())
        self.wfile.flush()
        self.close_connection = True  # the drop

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sse_server() -> Iterator[str]:
    _Sse.seen_last_ids = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_dropped_stream_resumes_after_the_last_id_without_loss_or_repeat(
        sse_server: str) -> None:
    client = ApiClient(Config(sse_server, "t", "test"))
    with EventStream(client) as stream:
        got = []
        for _ in range(6):
            message = stream.get(timeout_s=5)
            assert message is not None
            got.append(message.data)
    assert got == ["1", "2", "3", "4", "5", "6"]
    assert _Sse.seen_last_ids[:2] == ["", "3"]  # the second request resumed after id 3


def test_an_error_answer_to_the_stream_is_the_api_problem(sse_server: str) -> None:
    client = ApiClient(Config(sse_server, "t", "test"))
    with pytest.raises(ApiError) as raised:
        EventStream(client, {"vm": "bad"}).open()
    assert raised.value.code == "vm_not_found"
    assert raised.value.line() == "error: no VM x (vm_not_found) - List VMs."
