"""Where the image library keeps files: ``<data_dir>/image-library/{files,partial}``.

Only complete, inspected files are in ``files/``; everything in progress is in ``partial/``
(removed on failure), so a half file can never be served as an image. Nothing in the store
is readable by other users (directories 0700, files 0600): images may hold secrets.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from limiquantix.image_library.file_store import ReplicatedFiles

DIR_MODE = 0o700


class StoreLayout:
    """Paths of one image library store."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "image-library"
        self.files = self.root / "files"
        self.partial = self.root / "partial"
        # LQ_IMAGE_STORE=jetstream: files/ is a cache of this Object Store (file_store.py).
        self.replica: ReplicatedFiles | None = None

    def create(self) -> None:
        """Make the store's directories, reachable by this service's user only (0700)."""
        for directory in (self.root, self.files, self.partial):
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            directory.chmod(DIR_MODE)

    def file(self, image_id: str) -> Path:
        """The served file of an active image."""
        return self.files / image_id

    def part(self, image_id: str) -> Path:
        """The file an import or upload writes to."""
        return self.partial / f"{image_id}.part"

    def resume_meta(self, image_id: str) -> Path:
        """What an interrupted download needs to resume (the source's validators)."""
        return self.partial / f"{image_id}.resume.json"

    def discard_partial(self, image_id: str) -> None:
        """Remove every in-progress file of an image (idempotent)."""
        for path in (self.part(image_id), self.resume_meta(image_id)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def discard_all(self, image_id: str) -> None:
        self.discard_partial(image_id)
        with contextlib.suppress(FileNotFoundError):
            self.file(image_id).unlink()
