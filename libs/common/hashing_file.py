"""A file written chunk by chunk while its sha256 is computed (downloads, uploads, caches).

Writing and hashing run in a worker thread (hashlib releases the GIL), so the event loop keeps
receiving the next chunk meanwhile; nothing is ever held in memory beyond one chunk.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import BinaryIO

HASH_BLOCK = 4 << 20


class HashingFile:
    """Append-only file with a running sha256; ``open_at`` resumes a partial file."""

    def __init__(self, path: Path, handle: BinaryIO, digest: hashlib._Hash, size: int) -> None:
        self.path = path
        self._handle = handle
        self._digest = digest
        self.size = size

    @classmethod
    async def create(cls, path: Path) -> HashingFile:
        """A new, empty file (an existing one is truncated)."""
        handle = await asyncio.to_thread(open, path, "wb")
        return cls(path, handle, hashlib.sha256(), 0)

    @classmethod
    async def open_at(cls, path: Path, offset: int) -> HashingFile:
        """Keep the first ``offset`` bytes of ``path`` (hashing them) and append after them."""

        def prepare() -> tuple[BinaryIO, hashlib._Hash]:
            digest = hashlib.sha256()
            handle = open(path, "r+b")  # noqa: SIM115 - owned by the HashingFile
            remaining = offset
            while remaining > 0:
                block = handle.read(min(HASH_BLOCK, remaining))
                if not block:
                    break
                digest.update(block)
                remaining -= len(block)
            handle.truncate(offset - remaining)
            handle.seek(offset - remaining)
            return handle, digest

        handle, digest = await asyncio.to_thread(prepare)
        return cls(path, handle, digest, handle.tell())

    def _write(self, chunk: bytes) -> None:
        self._handle.write(chunk)
        self._digest.update(chunk)

    async def write(self, chunk: bytes) -> None:
        await asyncio.to_thread(self._write, chunk)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    async def close(self, *, fsync: bool = True) -> None:
        """Flush (and fsync: the file is about to be renamed into place) and close."""

        def finish() -> None:
            try:
                self._handle.flush()
                if fsync:
                    os.fsync(self._handle.fileno())
            finally:
                self._handle.close()

        if not self._handle.closed:
            await asyncio.to_thread(finish)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


async def sha256_of(path: Path) -> str:
    """The sha256 of a whole file, computed in a worker thread."""
    return await asyncio.to_thread(_sha256_of, path)
