"""``qemu-img info`` and the safety checks every image passes before use.

Glance and Nova had CVEs from qcow2 images naming a backing file or an external data file
(reading host files through the image); such images are refused here, for every caller.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from limiquantix.common.base import Model
from limiquantix.common.errors import InvalidRequest
from limiquantix.common.process import run_tool


class UnsafeImage(InvalidRequest):
    """The image would make QEMU read other files (backing file, external data file)."""

    code = "unsafe_image"
    default_hint = "Flatten the image first: qemu-img convert -O qcow2 in.qcow2 out.qcow2"


class _FormatSpecificData(msgspec.Struct, frozen=True, rename="kebab"):
    data_file: str | None = None


class _FormatSpecific(msgspec.Struct, frozen=True):
    type: str = ""
    data: _FormatSpecificData = _FormatSpecificData()


class ImageInfo(Model, frozen=True, kw_only=True, rename="kebab"):
    """The fields of ``qemu-img info --output=json`` we rely on."""

    filename: str
    format: str
    virtual_size: int
    actual_size: int = 0
    backing_filename: str | None = None
    full_backing_filename: str | None = None
    format_specific: _FormatSpecific | None = None


_info_decoder = msgspec.json.Decoder(ImageInfo)

# qemu-img calls install media "raw"; the ISO 9660 volume descriptor signature tells them apart.
ISO9660_MAGIC_OFFSET = 0x8001
ISO9660_MAGIC = b"CD001"


def is_iso9660(path: Path) -> bool:
    """True when ``path`` carries the ISO 9660 signature (blocking: call in a thread)."""
    with open(path, "rb") as f:
        f.seek(ISO9660_MAGIC_OFFSET)
        return f.read(len(ISO9660_MAGIC)) == ISO9660_MAGIC


async def info(path: Path, *, fmt: str | None = None) -> ImageInfo:
    """What qemu-img says of ``path`` (format probed unless ``fmt`` is given)."""
    args = ["qemu-img", "info", "--output=json"]
    if fmt:
        args += ["-f", fmt]
    args.append(str(path))
    return _info_decoder.decode(await run_tool(args, timeout_s=30))


def check_safe(image: ImageInfo) -> None:
    """Raise UnsafeImage when the image refers to any other file."""
    if image.backing_filename or image.full_backing_filename:
        raise UnsafeImage(
            f"image has a backing file ({image.backing_filename}); refused",
            backing_file=image.backing_filename,
        )
    specific = image.format_specific
    if specific is not None and specific.data.data_file:
        raise UnsafeImage(
            f"image has an external data file ({specific.data.data_file}); refused",
            data_file=specific.data.data_file,
        )
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
