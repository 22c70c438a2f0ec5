"""Errors of the image library: each has a stable ``code`` and a hint saying what to do next."""

from __future__ import annotations

from limiquantix.common.errors import Conflict, InvalidRequest, LimiquantixError, NotFound


class ImageNotFound(NotFound):
    """No image with that id."""

    code = "image_not_found"
    default_hint = "List images with GET /v1/images; catalog entries have ids like 'debian-12'."


class ImageNotActive(Conflict):
    """The image exists but has no file to serve yet (or any more)."""

    code = "image_not_active"
    default_hint = "Wait until the image is 'active' (GET /v1/images/{id} shows its state)."


class ImageBusy(Conflict):
    """Another import, upload or delete of this image is under way."""

    code = "image_busy"
    default_hint = "Wait for it to finish, or DELETE the image to cancel it."


class NotUploader(LimiquantixError):
    """An upload record takes its file only from the API caller who created it."""

    code = "forbidden"
    status = 403
    default_hint = (
        "Upload with the same API token that created the upload record, or create your own "
        "with POST /v1/images and a name."
    )


class ImportFailed(LimiquantixError):
    """Downloading the source failed (HTTP error, connection lost, truncated transfer)."""

    code = "import_failed"
    status = 502
    default_hint = "Check that the URL is reachable from the image library, then import again."


class ChecksumMismatch(InvalidRequest):
    """The file's sha256 is not the one the importer said it must be."""

    code = "checksum_mismatch"
    default_hint = "Check the expected sha256 (the distribution's SHA256SUMS) and import again."


class NotAnImage(InvalidRequest):
    """The file is not what it claims to be (format mismatch, corrupt, unknown format)."""

    code = "not_an_image"
    default_hint = "Upload a qcow2, raw disk or ISO9660 file, and declare its real format."


class UploadIncomplete(InvalidRequest):
    """The upload ended before its declared length (client aborted or connection lost)."""

    code = "upload_incomplete"
    default_hint = "PUT the whole file again; nothing of the partial upload was kept."


class ImageInUse(Conflict):
    """A VM record still names this image (its overlay is backed by the image's file)."""

    code = "image_in_use"
    default_hint = "Delete the VMs using it first (they are listed in 'vms')."
