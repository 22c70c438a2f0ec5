"""``Client``: the public API from a script, synchronously, in the API's own msgspec types."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from limiquantix.api.console.tickets import TicketResponse
from limiquantix.api.schemas import NodeInfo
from limiquantix.client import bodies as rq
from limiquantix.client.devices import Devices
from limiquantix.client.errors import NotFound, WaitTimeout
from limiquantix.client.guest import Guest
from limiquantix.client.snapshots import Snapshots
from limiquantix.client.sse import EventStream
from limiquantix.client.transport import REQUEST_TIMEOUT_S, Transport, seg
from limiquantix.client.waiting import GONE, RESYNC_AFTER_S, reached, targets_of, verdict
from limiquantix.common.images import CreateImageRequest, ImageRecord
from limiquantix.common.vms import CloudInitRequest, CreateVmRequest, VmAction, VmRecord, VmState

Progress = Callable[[int, int], None]
"""``progress(bytes_sent, bytes_total)``, called as an upload's body is read."""


class Vms:
    """``/v1/vms``: create, list, get, delete, actions, retry, cloud-init, console."""

    def __init__(self, client: Client) -> None:
        self._t = client.transport
        self._client = client

    def create(self, request: CreateVmRequest, *, idempotency_key: str = "") -> VmRecord:
        """``POST /v1/vms`` (202, state ``pending``); the same key and body give the same VM."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._t.post("/v1/vms", VmRecord, request, headers=headers)

    def list(self, *, state: str | VmState | None = None, node: str | None = None,
             label: Sequence[str] = ()) -> list[VmRecord]:
        """Every VM (all pages); ``label``: ``key`` or ``key=value`` filters, all must match."""
        return self._t.get_list("/v1/vms", VmRecord,
                                {"state": state, "node": node, "label": list(label)})

    def get(self, vm: str) -> VmRecord:
        """One VM by id or name; :class:`NotFound` when there is none."""
        return self._t.get(f"/v1/vms/{seg(vm)}", VmRecord)

    def find(self, vm: str) -> VmRecord | None:
        """One VM by id or name, or None."""
        try:
            return self.get(vm)
        except NotFound:
            return None

    def delete(self, vm: str, *, force: bool = False) -> VmRecord:
        """``DELETE`` (202); ``force`` removes a VM whose node is offline at once."""
        query = {"force": "true"} if force else None
        return self._t.call("DELETE", f"/v1/vms/{seg(vm)}", VmRecord, query=query)

    def action(self, vm: str, action: VmAction | str) -> VmRecord:
        """start, stop, force-stop, reboot, pause or resume (202, the transitional state)."""
        return self._t.post(f"/v1/vms/{seg(vm)}/{rq.action_path(action)}", VmRecord)

    def start(self, vm: str) -> VmRecord:
        return self.action(vm, VmAction.START)

    def stop(self, vm: str) -> VmRecord:
        return self.action(vm, VmAction.STOP)

    def retry(self, vm: str) -> VmRecord:
        """A VM in ``error`` tries again what failed."""
        return self._t.post(f"/v1/vms/{seg(vm)}/retry", VmRecord)

    def set_cloud_init(self, vm: str, request: CloudInitRequest) -> VmRecord:
        """New cloud-init settings and instance-id, applied at the next boot."""
        return self._t.post(f"/v1/vms/{seg(vm)}/cloud-init", VmRecord, request)

    def console_ticket(self, vm: str) -> TicketResponse:
        """A single-use ticket for the browser console (its ``url`` opens it)."""
        return self._t.post(f"/v1/vms/{seg(vm)}/console", TicketResponse)

    def console_log(self, vm: str, *, max_bytes: int | None = None) -> rq.ConsoleLog:
        """The tail of the serial console log and the log's full size."""
        response = self._t.request("GET", f"/v1/vms/{seg(vm)}/console-log",
                                   query={"max_bytes": max_bytes},
                                   headers={"Accept": "text/plain"})
        return rq.console_log(response.body, response.headers)

    def wait_for(self, vm: str, state: str | VmState | Collection[str | VmState], *,
                 timeout_s: float = 600.0) -> VmRecord | None:
        """Block until the VM is in ``state`` (one or several; ``"gone"`` for deleted).

        Raises :class:`VmFailed` when it goes to ``error``, is deleted or an action fails,
        :class:`WaitTimeout` when ``timeout_s`` passes first. Returns the record (None for gone).
        """
        targets = targets_of(state)
        first = self.find(vm)
        if first is None:
            if GONE in targets:
                return None  # gone already
            first = self.get(vm)  # raises the API's own NotFound
        name, vm_id = first.name, first.id
        deadline = time.monotonic() + timeout_s
        with self._client.events.stream(vm=vm_id) as stream:
            record = self.find(vm_id)  # after the stream is open: nothing slips between
            heard = time.monotonic()
            while not reached(record, name, targets):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(
                        f"{name} is still {record.state if record else GONE} after "
                        f"{timeout_s:g} s, not {' or '.join(sorted(targets))}")
                message = stream.get(timeout_s=min(remaining, 1.0))
                if message is None:
                    if time.monotonic() - heard >= RESYNC_AFTER_S:
                        heard, record = time.monotonic(), self.find(vm_id)
                    continue
                heard = time.monotonic()
                match verdict(message.decoded(), vm_id):
                    case "refetch":
                        record = self.find(vm_id)
                    case "gone":
                        record = None
        return record


class Images:
    """``/v1/images``: list, get, import, upload (with progress), delete."""

    def __init__(self, client: Client) -> None:
        self._t = client.transport

    def list(self, *, state: str = "", format: str = "", os: str = "") -> list[ImageRecord]:
        return self._t.get_list("/v1/images", ImageRecord,
                                {"state": state, "format": format, "os": os})

    def get(self, image: str) -> ImageRecord:
        return self._t.get(f"/v1/images/{seg(image)}", ImageRecord)

    def create(self, request: CreateImageRequest) -> ImageRecord:
        """An import (``catalog_id`` or ``source_url``; 202) or an empty upload record (201)."""
        return self._t.post("/v1/images", ImageRecord, request)

    def import_url(self, url: str, *, name: str = "", sha256: str = "", **fields: Any
                   ) -> ImageRecord:
        """Import from a URL (the library downloads it)."""
        return self.create(CreateImageRequest(source_url=url, name=name, sha256=sha256,
                                              **fields))

    def upload_file(self, image_id: str, file: rq.Readable, size: int, *, sha256: str = "",
                    progress: Progress | None = None, timeout_s: float = 600.0) -> ImageRecord:
        """``PUT`` a file's bytes into an upload record; answered once it is verified."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if sha256:
            headers["X-Checksum-Sha256"] = sha256
        reader = rq.ProgressReader(file, size, progress)
        return self._t.call("PUT", f"/v1/images/{seg(image_id)}/file", ImageRecord,
                            headers=headers,
                            body=reader,  # type: ignore[arg-type]  # http.client only reads
                            timeout_s=max(self._t.timeout_s, timeout_s))

    def upload(self, path: str, *, name: str = "", sha256: str = "",
               progress: Progress | None = None, **fields: Any) -> ImageRecord:
        """Create an upload record and send the file at ``path`` into it."""
        with open(path, "rb") as file:
            size = rq.file_size(file)
            record = self.create(CreateImageRequest(name=name or rq.base_name(path),
                                                    sha256=sha256, **fields))
            return self.upload_file(record.id, file, size, sha256=sha256, progress=progress)

    def delete(self, image: str) -> rq.ImageDeleted:
        return self._t.call("DELETE", f"/v1/images/{seg(image)}", rq.ImageDeleted)


class Nodes:
    """``/v1/nodes``: what each node has and holds."""

    def __init__(self, client: Client) -> None:
        self._t = client.transport

    def list(self) -> list[NodeInfo]:
        return self._t.get_list("/v1/nodes", NodeInfo)

    def get(self, node: str) -> NodeInfo:
        return self._t.get(f"/v1/nodes/{seg(node)}", NodeInfo)


class Events:
    """``/v1/events``: Server-Sent Events that resume by id after a drop."""

    def __init__(self, client: Client) -> None:
        self._t = client.transport

    def stream(self, *, vm: str = "", last_event_id: str = "", since: str = "",
               ) -> EventStream:
        """A followed stream (use ``with``); iterate it or ``get(timeout_s)`` each message,
        whose ``decoded()`` is the shared :data:`~limiquantix.common.events.Event` union."""
        query: Mapping[str, Any] = {"vm": vm, "since": since}
        return EventStream(self._t, query, last_event_id=last_event_id).open()


class Client:
    """The public API, synchronously: ``Client(url, token=...)`` with ``.vms``, ``.images``,
    ``.nodes`` and ``.events``. Errors raise :mod:`limiquantix.client.errors` types."""

    def __init__(self, url: str, *, token: str, timeout_s: float = REQUEST_TIMEOUT_S,
                 transport: Transport | None = None) -> None:
        self.transport = transport or Transport(url, token, timeout_s)
        self.vms = Vms(self)
        self.images = Images(self)
        self.nodes = Nodes(self)
        self.events = Events(self)
        self.guest = Guest(self)  # exec, files, password through the guest agent
        self.snapshots = Snapshots(self)  # snapshots, clones, publish (docs/day2.md)
        self.devices = Devices(self)  # resize, extra disks, media (docs/day2.md)

    @classmethod
    def over(cls, transport: Transport) -> Client:
        """A client on an existing transport (``lq`` builds its own, with its user agent)."""
        return cls(transport.base_url, token=transport.token, transport=transport)

    def close(self) -> None:
        """Nothing is pooled (a connection per request); here for symmetry with AsyncClient."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
