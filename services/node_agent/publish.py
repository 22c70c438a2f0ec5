"""``vm.publish``: a VM's disk becomes an image in the library (a template), like an upload.

The gateway created an upload record (``queued``) and signed a PUT token for that image only;
the node flattens the disk (at a snapshot, or its current state: a running VM through a
temporary internal snapshot) into one compressed qcow2 with no backing file, and PUTs it to
the library, which verifies and activates it exactly as a user's upload (its ``uploading`` /
``verifying`` / ``active`` states and ``image.progress`` events). ``vm.publish_progress``
events say the node's phases (snapshot, convert, upload, done, failed).

What is cleaned: nothing inside the guest's file system (docs/day2.md): every VM made from the
image gets its own instance-id, which is what makes cloud-init run as a new instance (new
hostname, new SSH host keys, users and keys of the new VM's request). /etc/machine-id and the
old instance's /var/lib/cloud are left as they were.

A redelivered command converts again (the temporary file is removed after the upload) and PUTs
again; the library takes one upload per record, and answers a finished one with 409, which the
node reads as done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog

from limiquantix.common.commands import PublishVm
from limiquantix.common.errors import LimiquantixError
from limiquantix.common.events import VmActionFailed, VmPublishProgress
from limiquantix.common.vms import VmError, VmRecord
from limiquantix.node_agent.clone import copy_disk, readable_state
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.errors import NodeAgentError
from limiquantix.node_agent.vm_files import path_inside

log = structlog.get_logger()

CHUNK = 1 << 20
UPLOAD_READ_TIMEOUT_S = 300.0
PROGRESS_EVERY_S = 1.0


class PublishFailed(NodeAgentError):
    """The image could not be made or uploaded."""

    code = "publish_failed"
    default_hint = ("See the message; delete the image (`lq image delete`) and publish again.")


def publish_file(ctx: AgentContext, vm_id: str, image_id: str) -> Path:
    """The flattened disk while it is made and uploaded."""
    return path_inside(ctx.files(vm_id).root, f"publish-{image_id}.qcow2")


async def _announce(ctx: AgentContext, record: VmRecord, command: PublishVm, phase: str,
                    **fields: object) -> None:
    await ctx.recorder.publish(VmPublishProgress(
        vm_id=record.id, name=record.name, node=ctx.node_id, image_id=command.image_id,
        phase=phase, **fields))  # type: ignore[arg-type]


async def _chunks(path: Path, on_bytes: list[int]) -> AsyncIterator[bytes]:
    with open(path, "rb") as source:  # noqa: ASYNC230 - reads happen in the worker thread
        while True:
            chunk = await asyncio.to_thread(source.read, CHUNK)
            if not chunk:
                return
            on_bytes[0] += len(chunk)
            yield chunk


async def upload(ctx: AgentContext, record: VmRecord, command: PublishVm, path: Path) -> None:
    """PUT ``path`` into the image's upload record (the library checks and activates it)."""
    url = f"{ctx.settings.effective_image_library_url}/images/{command.image_id}/file"
    total = (await asyncio.to_thread(path.stat)).st_size
    sent = [0]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=UPLOAD_READ_TIMEOUT_S)

    async def report() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            await _announce(ctx, record, command, "upload", fraction=sent[0] / max(total, 1),
                            bytes_done=sent[0], bytes_total=total)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        reporter = asyncio.create_task(report())
        try:
            async with session.put(url, data=_chunks(path, sent), headers={
                    "Authorization": f"Bearer {command.upload_token}",
                    "Content-Length": str(total),
                    "Content-Type": "application/octet-stream"}) as response:
                body = await response.text()
        except aiohttp.ClientError as exc:
            raise PublishFailed(f"uploading to the image library failed: {exc}") from None
        finally:
            reporter.cancel()
    if response.status == 409 and "active" in body:
        log.info("published image already uploaded", image_id=command.image_id)
        return
    if response.status >= 300:
        raise PublishFailed(f"the image library refused the upload ({response.status}): "
                            f"{body[:300]}")


async def publish_vm(ctx: AgentContext, command: PublishVm) -> None:
    """Flatten, compress and upload; failures are the image's, not the VM's (its state stays)."""
    record = await ctx.recorder.find(command.vm_id)
    if record is None:
        return
    path = publish_file(ctx, record.id, command.image_id)
    started = time.monotonic()
    try:
        await _announce(ctx, record, command, "convert", fraction=0.0)
        async with readable_state(ctx, record, command.snapshot_id or "",
                                  f"lq-publish-{command.image_id}") as snapshot:
            size = await copy_disk(ctx.files(record.id).disk, path, snapshot=snapshot,
                                   linked=False, compress=True)
        await _announce(ctx, record, command, "upload", fraction=0.0, bytes_total=size)
        await upload(ctx, record, command, path)
    except LimiquantixError as exc:
        log.warning("publish failed", vm_id=record.id, image_id=command.image_id,
                    error=exc.message)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        await _announce(ctx, record, command, "failed", message=exc.message)
        await ctx.recorder.publish(VmActionFailed(
            vm_id=record.id, name=record.name, node=ctx.node_id, action="vm.publish",
            error=VmError(code=exc.code, message=exc.message, hint=exc.hint)))
        return
    await asyncio.to_thread(path.unlink, missing_ok=True)
    seconds = round(time.monotonic() - started, 3)
    log.info("vm published", vm_id=record.id, image_id=command.image_id, bytes=size,
             seconds=seconds)
    await _announce(ctx, record, command, "done", fraction=1.0, bytes_done=size,
                    bytes_total=size, message=f"{size} bytes in {seconds} s")
