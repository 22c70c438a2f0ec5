"""``qemu-img info``/``check`` on untrusted files, and the safety checks every image passes.

Glance and Nova had CVEs from qcow2 images naming a backing file or an external data file
(reading host files through the image); such images are refused here, for every caller.
A crafted image can also make ``qemu-img`` itself allocate or spin without bound (the
CVE-2015-5162 class): it runs under ``prlimit`` (address space and CPU time, as OpenStack's
``QEMU_IMG_LIMITS`` do) with a wall-clock timeout. Its messages name the file it was given;
:func:`scrub` takes our paths out before a message reaches a record.
"""

from __future__ import annotations

import asyncio
import resource
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from limiquantix.common.errors import InvalidRequest
from limiquantix.common.model import Model
from limiquantix.common.process import ToolFailed


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one ``qemu-img`` run on an untrusted file."""

    address_space: int  # bytes (RLIMIT_AS)
    cpu_s: int  # seconds of CPU (RLIMIT_CPU)
    timeout_s: float  # wall clock, then killed


GIB = 1 << 30
# Nova and Glance run ``qemu-img info`` with 1 GiB and 30 s CPU; a check walks every table.
INFO_LIMITS = Limits(address_space=1 * GIB, cpu_s=30, timeout_s=60.0)
CHECK_LIMITS = Limits(address_space=2 * GIB, cpu_s=240, timeout_s=300.0)


def _set_limits(limits: Limits) -> None:  # only when util-linux's prlimit is missing
    resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))


async def run_limited(args: Sequence[str], limits: Limits) -> tuple[int, bytes, bytes]:
    """Run ``qemu-img args`` under ``limits``: (exit status, stdout, stderr).

    A run over its CPU time dies of SIGXCPU/SIGKILL, one over its address space fails to
    allocate: both are a non-zero status; one over ``timeout_s`` is killed (ToolFailed).
    """
    prlimit = shutil.which("prlimit")
    command = ["qemu-img", *args]
    if prlimit:
        command = [prlimit, f"--as={limits.address_space}", f"--cpu={limits.cpu_s}", "--",
                   *command]
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=None if prlimit else (lambda: _set_limits(limits)),
        )
    except FileNotFoundError:
        raise ToolFailed("qemu-img is not installed", tool="qemu-img") from None
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), limits.timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ToolFailed(f"qemu-img took longer than {limits.timeout_s:g} s",
                         tool="qemu-img") from None
    assert proc.returncode is not None
    return proc.returncode, stdout, stderr


def scrub(message: str, *paths: Path) -> str:
    """``message`` without the given paths (a record must not map the host's file system)."""
    for path in paths:
        message = message.replace(str(path), "<file>")
    return message


def exit_reason(status: int, stderr: bytes) -> str:
    """A one-line reason for a failed run (signals: the limits stopped it)."""
    if status < 0:
        return f"qemu-img stopped by signal {-status} (resource limit)"
    text = " ".join(stderr.decode(errors="replace").split())[:500]
    return text or f"qemu-img exit status {status}"


class UnsafeImage(InvalidRequest):
    """The image would make QEMU read other files (backing file, external data file)."""

    code = "unsafe_image"
    default_hint = "Flatten the image first: qemu-img convert -O qcow2 in.qcow2 out.qcow2"


class _FormatSpecificData(msgspec.Struct, frozen=True, rename="kebab"):
    data_file: str | None = None


class _FormatSpecific(msgspec.Struct, frozen=True):
    type: str = ""
    data: _FormatSpecificData = _FormatSpecificData()


class InternalSnapshot(msgspec.Struct, frozen=True, rename="kebab"):
    """An internal snapshot qemu-img lists in a qcow2 (its name is our snapshot id)."""

    name: str
    vm_state_size: int = 0  # bytes of saved memory state (0: disk only)


class ImageInfo(Model, frozen=True, kw_only=True, rename="kebab"):
    """The fields of ``qemu-img info --output=json`` we rely on."""

    filename: str
    format: str
    virtual_size: int
    actual_size: int = 0
    backing_filename: str | None = None
    full_backing_filename: str | None = None
    backing_filename_format: str | None = None
    format_specific: _FormatSpecific | None = None
    snapshots: tuple[InternalSnapshot, ...] = ()


_info_decoder = msgspec.json.Decoder(ImageInfo)

# qemu-img calls install media "raw"; the ISO 9660 volume descriptor signature tells them apart.
ISO9660_MAGIC_OFFSET = 0x8001
ISO9660_MAGIC = b"CD001"


def is_iso9660(path: Path) -> bool:
    """True when ``path`` carries the ISO 9660 signature (blocking: call in a thread)."""
    with open(path, "rb") as f:
        f.seek(ISO9660_MAGIC_OFFSET)
        return f.read(len(ISO9660_MAGIC)) == ISO9660_MAGIC


async def info(path: Path, *, fmt: str | None = None, force_share: bool = False
               ) -> ImageInfo:
    """What qemu-img says of ``path`` (format probed unless ``fmt`` is given), run limited;
    ``force_share`` (``-U``) reads a disk a running QEMU holds open.

    ToolFailed (message without ``path``) when qemu-img cannot read it or hits a limit.
    """
    args = ["info", "--output=json"]
    if force_share:
        args.append("-U")
    if fmt:
        args += ["-f", fmt]
    args.append(str(path))
    status, stdout, stderr = await run_limited(args, INFO_LIMITS)
    if status != 0:
        raise ToolFailed(f"qemu-img info failed: {scrub(exit_reason(status, stderr), path)}",
                         tool="qemu-img")
    try:
        return _info_decoder.decode(stdout)
    except msgspec.ValidationError as exc:
        raise ToolFailed(f"qemu-img info gave unexpected output: {exc}", tool="qemu-img") from None


def check_safe(image: ImageInfo) -> None:
    """Raise UnsafeImage when the image refers to any other file."""
    if image.backing_filename or image.full_backing_filename:
        # The name is not echoed: it is a host path the file would have QEMU read.
        raise UnsafeImage("image names a backing file; refused")
    specific = image.format_specific
    if specific is not None and specific.data.data_file:
        raise UnsafeImage("image names an external data file; refused")
    if image.format not in {"qcow2", "raw"}:
        raise InvalidRequest(
            f"image format {image.format!r} is not supported (qcow2 or raw)",
            hint="Convert it with qemu-img convert -O qcow2.", format=image.format,
        )


async def inspect_safe(path: Path) -> ImageInfo:
    """``info`` followed by ``check_safe``."""
    image = await info(path)
    check_safe(image)
    return image
