"""Errors of the node's image cache (stable ``code`` and a ``hint`` each)."""

from __future__ import annotations

from limiquantix.common.errors import Conflict, LimiquantixError


class ImageNotReady(Conflict):
    """The catalog image exists but is not ``active`` (not imported yet, or failed)."""

    code = "image_not_ready"
    default_hint = (
        "Import it first (POST /v1/images {\"catalog_id\": ...}) and wait until it is active."
    )


class ImageDownloadFailed(LimiquantixError):
    """The node could not fetch the image file from the image library."""

    code = "image_download_failed"
    status = 502
    default_hint = "Check that the node reaches LQ_IMAGE_LIBRARY_URL; the VM can be created again."


class ImageChecksumMismatch(LimiquantixError):
    """The file the node received does not have the catalog's sha256 (it was discarded)."""

    code = "image_checksum_mismatch"
    status = 502
    default_hint = "Retry; if it persists, the image library's file is damaged: re-import it."


class ImageImportFailed(LimiquantixError):
    """The library's import of the catalog image this VM needs failed (or stalled)."""

    code = "image_import_failed"
    status = 502
    default_hint = ("`lq image show IMAGE` has the import's reason; fix it (or import the image "
                    "again), then `lq vm start VM` retries the create.")
