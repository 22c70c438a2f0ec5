"""Images in the catalog (``images`` KV bucket, key: image id) and the library's RPC bodies."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from limiquantix.common.model import Model, RequestBody


class ImageState(enum.StrEnum):
    REMOTE = "remote"  # a shipped catalog entry, known but not downloaded (it is on first use)
    AVAILABLE = "available"  # legacy name of REMOTE in stores written before 0.2; reseeded
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    UPLOADING = "uploading"
    VERIFYING = "verifying"
    ACTIVE = "active"
    ERROR = "error"
    DELETING = "deleting"


class ImageRecord(Model, frozen=True, kw_only=True):
    """One catalog entry; ``sha256`` and ``format`` are known once it is ``active``.

    Before ``active``, ``format`` is the format the importer declared (empty: detect it) and
    ``expected_sha256`` the checksum the file must have (empty: computed, not checked).
    """

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
    expected_sha256: str = ""
    catalog_id: str = ""  # set on shipped catalog entries (the record id is the same)
    created_by: str = ""  # upload records: the API caller who may PUT the file (see uploads.py)
    min_disk_gib: int = 0


Sha256 = Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")]
ImageFormatName = Literal["", "qcow2", "raw", "iso"]
Labels = dict[
    Annotated[str, msgspec.Meta(max_length=63)], Annotated[str, msgspec.Meta(max_length=255)]
]


class CreateImageRequest(RequestBody, frozen=True, kw_only=True):
    """Body of ``POST /v1/images`` (and of the ``import`` / ``create_upload`` RPCs).

    - ``catalog_id`` alone: import a shipped catalog entry from its official URL
      (``source_url`` may point elsewhere, e.g. a local mirror).
    - ``source_url``: import from that URL (the library downloads it).
    - neither: create an empty record to ``PUT /v1/images/{id}/file`` into (an upload).
    """

    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    catalog_id: str = ""
    source_url: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    sha256: Sha256 = ""
    format: ImageFormatName = ""
    os: str = ""
    version: str = ""
    architecture: str = "x86_64"
    default_user: str = ""
    labels: Labels = {}


class ListImages(Model, frozen=True, kw_only=True):
    """``list`` RPC: every filter is optional."""

    state: str = ""
    format: str = ""
    os: str = ""


class ImageList(Model, frozen=True, kw_only=True):
    images: tuple[ImageRecord, ...] = ()


class ImageRef(Model, frozen=True, kw_only=True):
    """``get`` and ``delete`` RPCs."""

    id: str


class ImageDeleted(Model, frozen=True, kw_only=True):
    """Reply of ``delete``: ``remote`` again for a catalog entry, gone otherwise."""

    id: str
    state: str = ""


image_encoder = msgspec.json.Encoder()
image_decoder = msgspec.json.Decoder(ImageRecord)

# NATS request/reply (``common.rpc``): the operation is the last subject token
# (subjects.image_rpc(op)).
# On ``create_upload``: who the gateway creates the record for (set by the gateway, not the body).
RPC_CREATED_BY_HEADER = "Lq-Created-By"
RPC_LIST = "list"
RPC_GET = "get"
RPC_IMPORT = "import"
RPC_CREATE_UPLOAD = "create_upload"
RPC_DELETE = "delete"
