"""A VM image as a file on this node, ready to back an overlay or to be attached as a cdrom."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

ImageFormat = Literal["qcow2", "raw", "iso"]


class LocalImage(msgspec.Struct, frozen=True, kw_only=True):
    """Where an image is on this node and what it is (from the image cache or a node path)."""

    path: Path
    format: ImageFormat
    virtual_size: int
    sha256: str = ""
