"""``AsyncClient``: the same API as :class:`~limiquantix.client.Client`, on aiohttp.

One ``aiohttp.ClientSession`` per client (connections pooled); use ``async with`` or
``await client.close()``. The event stream reads in a task of its own and hands messages over a
queue, so ``get(timeout_s)`` never cancels a half-read line; it resumes by ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
import msgspec

from limiquantix.api.console.tickets import TicketResponse
from limiquantix.api.schemas import NodeInfo
from limiquantix.client import bodies as rq
from limiquantix.client.devices import AsyncDevices
from limiquantix.client.errors import (
    BadResponse,
    ClientError,
    ConnectionFailed,
    NotFound,
    WaitTimeout,
    from_problem,
)
from limiquantix.client.guest import AsyncGuest
from limiquantix.client.snapshots import AsyncSnapshots
from limiquantix.client.sse import DEFAULT_RETRY_S, RECONNECT_ATTEMPTS, Message, Parser
from limiquantix.client.transport import (
    REQUEST_TIMEOUT_S,
    USER_AGENT,
    Response,
    decode,
    decode_page,
    query_string,
    reason_of,
    seg,
)
from limiquantix.client.waiting import GONE, RESYNC_AFTER_S, reached, targets_of, verdict
from limiquantix.common.images import CreateImageRequest, ImageRecord
from limiquantix.common.vms import CloudInitRequest, CreateVmRequest, VmAction, VmRecord, VmState

T = TypeVar("T")
UPLOAD_CHUNK = 1024 * 1024
Progress = Callable[[int, int], None]


class AsyncTransport:
    """Requests on one pooled session; errors raise the same typed exceptions as the sync one."""

    def __init__(self, url: str, token: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.base_url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """Made on first use, inside the running loop (aiohttp requires it)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={
                "Authorization": f"Bearer {self.token}", "User-Agent": USER_AGENT,
                "Accept": "application/json"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def unreachable(self, exc: BaseException) -> ConnectionFailed:
        return ConnectionFailed(self.base_url, reason_of(exc))

    @contextlib.asynccontextmanager
    async def open(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None, data: Any = None,
                   timeout_s: float | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """The (unread) response of a request; error answers raise."""
        timeout = aiohttp.ClientTimeout(total=timeout_s if timeout_s is not None
                                        else self.timeout_s)
        url = self.base_url + path + query_string(query)
        try:
            async with self.session().request(method, url, headers=headers, data=data,
                                              timeout=timeout) as response:
                if response.status >= 400:
                    body = await response.read()
                    raise from_problem(response.status, response.reason or "", body,
                                       response.headers.get("Content-Type", ""),
                                       response.headers.get("Retry-After"))
                yield response
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self.unreachable(exc) from None

    async def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                      json_body: Any = None, headers: Mapping[str, str] | None = None
                      ) -> Response:
        extra = dict(headers or {})
        data = None
        if json_body is not None:
            data = msgspec.json.encode(json_body)
            extra["Content-Type"] = "application/json"
        async with self.open(method, path, query=query, headers=extra, data=data) as response:
            try:
                body = await response.read()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise self.unreachable(exc) from None
            return Response(response.status,
                            {k.lower(): v for k, v in response.headers.items()}, body)

    async def get(self, path: str, type: type[T], query: Mapping[str, Any] | None = None) -> T:
        return decode((await self.request("GET", path, query=query)).body, type)

    async def post(self, path: str, type: type[T], json_body: Any = None,
                   headers: Mapping[str, str] | None = None) -> T:
        answer = await self.request("POST", path, json_body=json_body, headers=headers)
        return decode(answer.body, type)

    async def get_list(self, path: str, type: type[T], query: Mapping[str, Any] | None = None
                       ) -> list[T]:
        """Every item of a collection, page after page (``next_cursor``)."""
        items: list[T] = []
        cursor: str | None = None
        while True:
            answer = await self.request("GET", path, query={**(query or {}), "cursor": cursor})
            page, cursor = decode_page(answer.body, type)
            items += page
            if cursor is None:
                return items


class _Closed:
    """Queued when the stream ends for good (after its error, if any)."""


class AsyncEventStream:
    """``GET /v1/events`` followed by a task; ``async for`` it or ``await get(timeout_s)``."""

    def __init__(self, transport: AsyncTransport, query: Mapping[str, Any] | None = None,
                 last_event_id: str = "") -> None:
        self.transport = transport
        self.query = dict(query or {})
        self.parser = Parser()
        self.parser.last_id = last_event_id
        self._queue: asyncio.Queue[Message | ClientError | _Closed] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def open(self) -> AsyncEventStream:
        """Connect now (an error answer raises here), then read in the background."""
        if self._task is not None:
            return self
        self._task = asyncio.create_task(self._run(), name="limiquantix-sse")
        waiter = asyncio.create_task(self._connected.wait())
        await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not self._connected.is_set():  # the first connection failed: say why
            item = self._queue.get_nowait()
            await self.close()
            if isinstance(item, ClientError):
                raise item
            raise self.transport.unreachable(ConnectionError("event stream closed"))
        return self

    async def __aenter__(self) -> AsyncEventStream:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        attempts = 0
        try:
            while True:
                try:
                    await self._read()
                    attempts = 0
                except ConnectionFailed:
                    if not self._connected.is_set():
                        raise
                attempts += 1  # the server went away: resume after the last id we saw
                if attempts > RECONNECT_ATTEMPTS:
                    raise self.transport.unreachable(ConnectionError("event stream lost"))
                await asyncio.sleep(self.parser.retry_s or DEFAULT_RETRY_S)
        except ClientError as exc:  # an answer (401, 404...) or no way back: the end
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(_Closed())

    async def _read(self) -> None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.parser.last_id:
            headers["Last-Event-ID"] = self.parser.last_id
        # No total timeout: a stream lives as long as it is followed (keep-alives every 15 s).
        async with self.transport.open("GET", "/v1/events", query=self.query, headers=headers,
                                       timeout_s=0) as response:
            if not response.content_type.startswith("text/event-stream"):
                raise BadResponse(f"/v1/events answered {response.content_type}, "
                                  "not an event stream")
            self._connected.set()
            try:
                async for raw in response.content:
                    message = self.parser.feed(raw.decode("utf-8", "replace").rstrip("\r\n"))
                    if message is not None:
                        self._queue.put_nowait(message)
            except (aiohttp.ClientError, OSError) as exc:
                raise self.transport.unreachable(exc) from None

    async def get(self, timeout_s: float | None = None) -> Message | None:
        """The next message; None when ``timeout_s`` passes first. Stream errors raise."""
        try:
            async with asyncio.timeout(timeout_s):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if isinstance(item, ClientError):
            raise item
        if isinstance(item, _Closed):
            self._queue.put_nowait(item)  # stay closed for later calls
            raise self.transport.unreachable(ConnectionError("event stream closed"))
        return item

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        while True:
            message = await self.get()
            if message is not None:
                yield message

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class AsyncVms:
    """``/v1/vms``, awaited. See :class:`limiquantix.client.sync.Vms`."""

    def __init__(self, client: AsyncClient) -> None:
        self._t = client.transport
        self._client = client

    async def create(self, request: CreateVmRequest, *, idempotency_key: str = ""
                     ) -> VmRecord:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self._t.post("/v1/vms", VmRecord, request, headers=headers)

    async def list(self, *, state: str | VmState | None = None, node: str | None = None,
                   label: Sequence[str] = ()) -> list[VmRecord]:
        """Every VM (all pages); ``label``: ``key`` or ``key=value`` filters, all must match."""
        return await self._t.get_list("/v1/vms", VmRecord,
                                      {"state": state, "node": node, "label": list(label)})

    async def get(self, vm: str) -> VmRecord:
        return await self._t.get(f"/v1/vms/{seg(vm)}", VmRecord)

    async def find(self, vm: str) -> VmRecord | None:
        try:
            return await self.get(vm)
        except NotFound:
            return None

    async def delete(self, vm: str, *, force: bool = False) -> VmRecord:
        query = {"force": "true"} if force else None
        answer = await self._t.request("DELETE", f"/v1/vms/{seg(vm)}", query=query)
        return decode(answer.body, VmRecord)

    async def action(self, vm: str, action: VmAction | str) -> VmRecord:
        return await self._t.post(f"/v1/vms/{seg(vm)}/{rq.action_path(action)}", VmRecord)

    async def start(self, vm: str) -> VmRecord:
        return await self.action(vm, VmAction.START)

    async def stop(self, vm: str) -> VmRecord:
        return await self.action(vm, VmAction.STOP)

    async def retry(self, vm: str) -> VmRecord:
        return await self._t.post(f"/v1/vms/{seg(vm)}/retry", VmRecord)

    async def set_cloud_init(self, vm: str, request: CloudInitRequest) -> VmRecord:
        return await self._t.post(f"/v1/vms/{seg(vm)}/cloud-init", VmRecord, request)

    async def console_ticket(self, vm: str) -> TicketResponse:
        return await self._t.post(f"/v1/vms/{seg(vm)}/console", TicketResponse)

    async def console_log(self, vm: str, *, max_bytes: int | None = None) -> rq.ConsoleLog:
        answer = await self._t.request("GET", f"/v1/vms/{seg(vm)}/console-log",
                                       query={"max_bytes": max_bytes},
                                       headers={"Accept": "text/plain"})
        return rq.console_log(answer.body, answer.headers)

    async def wait_for(self, vm: str, state: str | VmState | Collection[str | VmState], *,
                       timeout_s: float = 600.0) -> VmRecord | None:
        """Until the VM is in ``state`` (``"gone"``: deleted); the sync rules, awaited."""
        targets = targets_of(state)
        first = await self.find(vm)
        if first is None:
            if GONE in targets:
                return None  # gone already
            first = await self.get(vm)  # raises the API's own NotFound
        name, vm_id = first.name, first.id
        deadline = time.monotonic() + timeout_s
        async with self._client.events.stream(vm=vm_id) as stream:
            record = await self.find(vm_id)
            heard = time.monotonic()
            while not reached(record, name, targets):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(
                        f"{name} is still {record.state if record else GONE} after "
                        f"{timeout_s:g} s, not {' or '.join(sorted(targets))}")
                message = await stream.get(timeout_s=min(remaining, 1.0))
                if message is None:
                    if time.monotonic() - heard >= RESYNC_AFTER_S:
                        heard, record = time.monotonic(), await self.find(vm_id)
                    continue
                heard = time.monotonic()
                match verdict(message.decoded(), vm_id):
                    case "refetch":
                        record = await self.find(vm_id)
                    case "gone":
                        record = None
        return record


class AsyncImages:
    """``/v1/images``, awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._t = client.transport

    async def list(self, *, state: str = "", format: str = "", os: str = ""
                   ) -> list[ImageRecord]:
        return await self._t.get_list("/v1/images", ImageRecord,
                                      {"state": state, "format": format, "os": os})

    async def get(self, image: str) -> ImageRecord:
        return await self._t.get(f"/v1/images/{seg(image)}", ImageRecord)

    async def create(self, request: CreateImageRequest) -> ImageRecord:
        return await self._t.post("/v1/images", ImageRecord, request)

    async def import_url(self, url: str, *, name: str = "", sha256: str = "", **fields: Any
                         ) -> ImageRecord:
        return await self.create(CreateImageRequest(source_url=url, name=name, sha256=sha256,
                                                    **fields))

    async def upload_bytes(self, image_id: str, chunks: AsyncIterator[bytes], size: int, *,
                           sha256: str = "", progress: Progress | None = None,
                           timeout_s: float = 600.0) -> ImageRecord:
        """``PUT`` ``size`` bytes from ``chunks`` into an upload record."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if sha256:
            headers["X-Checksum-Sha256"] = sha256

        async def counted() -> AsyncIterator[bytes]:
            sent = 0
            async for chunk in chunks:
                sent += len(chunk)
                yield chunk
                if progress is not None:
                    progress(sent, size)

        async with self._t.open("PUT", f"/v1/images/{seg(image_id)}/file", headers=headers,
                                data=counted(), timeout_s=timeout_s) as response:
            return decode(await response.read(), ImageRecord)

    async def upload(self, path: str, *, name: str = "", sha256: str = "",
                     progress: Progress | None = None, **fields: Any) -> ImageRecord:
        """Create an upload record and send the file at ``path`` (read in a thread)."""
        file = await asyncio.to_thread(open, path, "rb")
        try:
            size = rq.file_size(file)
            record = await self.create(CreateImageRequest(name=name or rq.base_name(path),
                                                          sha256=sha256, **fields))

            async def chunks() -> AsyncIterator[bytes]:
                while data := await asyncio.to_thread(file.read, UPLOAD_CHUNK):
                    yield data

            return await self.upload_bytes(record.id, chunks(), size, sha256=sha256,
                                           progress=progress)
        finally:
            await asyncio.to_thread(file.close)

    async def delete(self, image: str) -> rq.ImageDeleted:
        answer = await self._t.request("DELETE", f"/v1/images/{seg(image)}")
        return decode(answer.body, rq.ImageDeleted)


class AsyncNodes:
    def __init__(self, client: AsyncClient) -> None:
        self._t = client.transport

    async def list(self) -> list[NodeInfo]:
        return await self._t.get_list("/v1/nodes", NodeInfo)

    async def get(self, node: str) -> NodeInfo:
        return await self._t.get(f"/v1/nodes/{seg(node)}", NodeInfo)


class AsyncEvents:
    def __init__(self, client: AsyncClient) -> None:
        self._t = client.transport

    def stream(self, *, vm: str = "", last_event_id: str = "", since: str = ""
               ) -> AsyncEventStream:
        """Use ``async with client.events.stream() as s: async for message in s: ...``."""
        return AsyncEventStream(self._t, {"vm": vm, "since": since},
                                last_event_id=last_event_id)


class AsyncClient:
    """``AsyncClient(url, token=...)``: ``.vms``, ``.images``, ``.nodes``, ``.events``."""

    def __init__(self, url: str, *, token: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.transport = AsyncTransport(url, token, timeout_s)
        self.vms = AsyncVms(self)
        self.images = AsyncImages(self)
        self.nodes = AsyncNodes(self)
        self.events = AsyncEvents(self)
        self.guest = AsyncGuest(self)  # exec, files, password through the guest agent
        self.snapshots = AsyncSnapshots(self)  # snapshots, clones, publish (docs/day2.md)
        self.devices = AsyncDevices(self)  # resize, extra disks, media (docs/day2.md)

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
