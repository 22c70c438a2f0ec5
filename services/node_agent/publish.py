"""``vm.publish``: a VM's disk becomes an image in the library (a template), like an upload.

The gateway created an upload record (``queued``) and signed a PUT token for that image only;
the node flattens the disk (at a snapshot, or its current state: a running VM through a
temporary internal snapshot) into one compressed qcow2 with no backing file, and PUTs it to
the library, which verifies and activates it exactly as a user's upload (its ``uploading`` /
``verifying`` / ``active`` states and ``image.progress`` events). ``vm.publish_progress``
events say the node's phases (snapshot, convert, upload, done, failed).

What is cleaned: with ``generalize`` (the gateway's default for a running VM whose guest agent
answers) the guest itself, through its agent: ``cloud-init clean --logs --seed --machine-id``
(its instance state, logs, seed and /etc/machine-id) and the SSH host keys are removed, then the
VM is shut down (left stopped) and its quiet disk converted. Without it (a stopped VM, no
agent), nothing inside the guest changes; the image's ``generalized`` label says which. Either
way every VM made from the image gets its own instance-id, which makes cloud-init run as a new
instance (hostname, SSH host keys, users and keys of the new VM's request).

A failed publish leaves nothing behind: the flattened file is removed, and the image record the
gateway made goes to ``error`` instead of staying ``queued`` forever. The node's token allows
only a PUT of that one image, so it closes the upload with an empty PUT: the library marks the
record ``error`` and drops its partial files, as for any broken upload. The node's reason is in
``vm.publish_progress`` (``failed``) and ``vm.action_failed``.

A redelivered command converts again (the temporary file is removed after the upload) and PUTs
again; the library takes one upload per record, and answers a finished one with 409, which the
node reads as done.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog

from limiquantix.common.commands import PublishVm, StopVm
from limiquantix.common.errors import LimiquantixError
from limiquantix.common.events import VmActionFailed, VmPublishProgress
from limiquantix.common.guest_rpc import GuestExecCall
from limiquantix.common.vms import VmError, VmRecord
from limiquantix.node_agent.clone import copy_disk, readable_state
from limiquantix.node_agent.context import AgentContext
from limiquantix.node_agent.errors import NodeAgentError
from limiquantix.node_agent.guest_ops import GuestOps
from limiquantix.node_agent.power import stop_vm
from limiquantix.node_agent.vm_files import path_inside, temp_path

log = structlog.get_logger()

CHUNK = 1 << 20
UPLOAD_READ_TIMEOUT_S = 300.0
PROGRESS_EVERY_S = 1.0
GENERALIZE_TIMEOUT_S = 120
GENERALIZE_STOP_TIMEOUT_S = 120.0
# One script, so a guest whose cloud-init lacks ``--machine-id`` is cleaned too. The machine-id
# file is left empty, not missing: systemd then makes a new one at the next boot, while a
# missing one with /etc still read-only stops it ("System cannot boot: Missing /etc/machine-id";
# what the Debian 12 guest did after ``cloud-init clean --machine-id`` alone).
GENERALIZE_SCRIPT = (
    "set -e\n"
    "cloud-init clean --logs --seed --machine-id 2>/dev/null || cloud-init clean --logs --seed\n"
    "truncate -s 0 /etc/machine-id\n"
    "rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub\n"
    "sync\n")


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


async def generalize(ctx: AgentContext, record: VmRecord) -> None:
    """Clean the guest's identity through its agent, then shut the VM down (it stays off)."""
    reply = await GuestOps(ctx.host, ctx.store, node_id=ctx.node_id).run(GuestExecCall(
        vm_id=record.id, command=("/bin/sh", "-c", GENERALIZE_SCRIPT),
        timeout_s=GENERALIZE_TIMEOUT_S))
    if reply.exit_code != 0:
        out = base64.b64decode(reply.stderr_b64 or reply.stdout_b64)
        detail = out.decode(errors="replace").strip()[-300:]
        raise PublishFailed(f"generalizing the guest failed (exit {reply.exit_code}): {detail}")
    log.info("guest generalized; shutting it down", vm_id=record.id)
    await stop_vm(ctx, StopVm(command_id=f"publish-{record.id}", vm_id=record.id,
                              timeout_s=GENERALIZE_STOP_TIMEOUT_S))


async def _abandon(ctx: AgentContext, record: VmRecord, command: PublishVm, path: Path,
                   exc: LimiquantixError) -> None:
    """A failed publish leaves nothing: no file, no image stuck ``queued``; it says why."""
    log.warning("publish failed", vm_id=record.id, image_id=command.image_id, error=exc.message)
    for leftover in (path, temp_path(path)):
        await asyncio.to_thread(leftover.unlink, missing_ok=True)
    await close_upload(ctx, command)
    await _announce(ctx, record, command, "failed", message=exc.message)
    await ctx.recorder.publish(VmActionFailed(
        vm_id=record.id, name=record.name, node=ctx.node_id, action="vm.publish",
        error=VmError(code=exc.code, message=exc.message, hint=exc.hint)))


async def close_upload(ctx: AgentContext, command: PublishVm) -> None:
    """An empty PUT: the library records the upload ``error`` (unless it is ``active``)."""
    url = f"{ctx.settings.effective_image_library_url}/images/{command.image_id}/file"
    try:
        async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30.0)) as session,
                    session.put(url, data=b"", headers={
                        "Authorization": f"Bearer {command.upload_token}",
                        "Content-Type": "application/octet-stream"}) as response):
            await response.read()
            log.info("failed publish's upload closed", image_id=command.image_id,
                     status=response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:  # the user deletes it; events say why
        log.warning("failed publish's upload not closed", image_id=command.image_id,
                    error=repr(exc))


async def publish_vm(ctx: AgentContext, command: PublishVm) -> None:
    """Generalize (when asked), flatten, compress and upload; failures are the image's, not
    the VM's (its state stays)."""
    record = await ctx.recorder.find(command.vm_id)
    if record is None:
        return
    path = publish_file(ctx, record.id, command.image_id)
    started = time.monotonic()
    try:
        if command.generalize:
            await _announce(ctx, record, command, "clean")
            await generalize(ctx, record)
            record = await ctx.recorder.find(record.id) or record
        await _announce(ctx, record, command, "convert", fraction=0.0)
        async with readable_state(ctx, record, command.snapshot_id or "",
                                  f"lq-publish-{command.image_id}") as snapshot:
            size = await copy_disk(ctx.files(record.id).disk, path, snapshot=snapshot,
                                   compress=True)
        await ctx.failpoints.hit("publish_converted")
        await _announce(ctx, record, command, "upload", fraction=0.0, bytes_total=size)
        await upload(ctx, record, command, path)
    except LimiquantixError as exc:
        await _abandon(ctx, record, command, path, exc)
        return
    except OSError as exc:  # the node's disk (full, unreadable): the same clean failure
        await _abandon(ctx, record, command, path, PublishFailed(f"publishing failed: {exc}"))
        return
    await asyncio.to_thread(path.unlink, missing_ok=True)
    seconds = round(time.monotonic() - started, 3)
    log.info("vm published", vm_id=record.id, image_id=command.image_id, bytes=size,
             seconds=seconds)
    await _announce(ctx, record, command, "done", fraction=1.0, bytes_done=size,
                    bytes_total=size, message=f"{size} bytes in {seconds} s")
