"""Images in the catalog (``images`` KV bucket, key: image id) and the library's RPC bodies."""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from limiquantix.common.base import Model


class ImageState(enum.StrEnum):
    AVAILABLE = "available"  # a shipped catalog entry, not downloaded yet
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    UPLOADING = "uploading"
    VERIFYING = "verifying"
    ACTIVE = "active"
    ERROR = "error"
    DELETING = "deleting"


class ImageRecord(Model, frozen=True, kw_only=True):
    """One catalog entry; ``sha256`` and ``format`` are known once it is ``active``."""

    id: str
    name: str
    os: str = ""
    version: str = ""
    architecture: str = "x86_64"
    format: str = ""  # qcow2 | raw | iso
    virtual_size: int | None = None
    file_size: int | None = None
    sha256: str = ""
    checksum_algorithm: str = "sha256"
    default_user: str = ""
    source_url: str = ""
    state: ImageState = ImageState.QUEUED
    error: str = ""
    bytes_done: int = 0
    bytes_total: int | None = None
    labels: dict[str, str] = {}
    created_at: datetime
    updated_at: datetime


image_encoder = msgspec.json.Encoder()
image_decoder = msgspec.json.Decoder(ImageRecord)
