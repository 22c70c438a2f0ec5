"""The node's image cache: catalog images as local files in ``<data_dir>/cloud-images/``.

Files are named by their sha256 (``<sha256>.<format>``, with a ``<sha256>.json`` sidecar), so
an image present is never fetched again, whatever its catalog id. A fetch is single-flight per
sha256 (ten VMs asking at once cause one download), hashed while streaming, verified against
the catalog's sha256, made readable by QEMU only (``vm_files.restrict_file``: cached images
are VMs' backing files, not for other users) and renamed into place atomically. Over
``LQ_IMAGE_CACHE_MAX_GIB`` the least recently used images that no VM overlay is backed by are
evicted (backing files are read from the overlays' qcow2 headers under ``<data_dir>/images/``).

Durability without an fsync on the critical path: a fetched file is not fsynced (that would
make every VM create wait for the disk to flush gigabytes); its sidecar records the kernel's
boot id instead. Pages not yet written back are lost only with the machine, i.e. across a
boot, so the first use of an image after a different boot re-hashes it once (a damaged file
is discarded and fetched again). A crash of the agent alone loses nothing.

Transient failures do not fail a create (issue 11): a library that does not answer the catalog
``get``, or a download cut, refused or answered 5xx, is retried with the one backoff policy
(``common.retry``) for up to ``LQ_TRANSIENT_RETRY_S`` without progress; a download continues
from its partial file (``Range``). Meanwhile the VM stays ``creating`` with its last
``image_progress``, and the log says what is retried. A 404/403 or a checksum mismatch is final.

Partial downloads live in ``.partial/``: what a killed agent left there is removed at start and
by eviction (only files of downloads in flight stay), and counted against the cache's limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from limiquantix.common.errors import Unavailable
from limiquantix.common.events import ImageProgress
from limiquantix.common.hashing_file import sha256_of
from limiquantix.common.images import ImageRecord, ImageState
from limiquantix.common.library_tokens import (
    NODE_SERVICE_PREFIX,
    bearer,
    load_or_create_secret,
    node_key,
    sign,
)
from limiquantix.common.publish import publish_event
from limiquantix.common.retry import retry_transient
from limiquantix.common.settings import Settings
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.node_agent import metrics
from limiquantix.node_agent.images.errors import (
    ImageChecksumMismatch,
    ImageDownloadFailed,
    ImageNotReady,
)
from limiquantix.node_agent.images.fetch import Fetched, FetchError, FetchProgress, fetch
from limiquantix.node_agent.images.local import ImageFormat, LocalImage
from limiquantix.node_agent.vm_files import ensure_traversable, restrict_dir, restrict_file

log = structlog.get_logger()

Progress = Callable[[int, int | None], Awaitable[None]]

PROGRESS_INTERVAL_S = 0.5
READ_TIMEOUT_S = 30.0  # no byte for this long: the connection is dead (and retried)
PARTIAL_DIR_MODE = 0o700  # downloads in progress: this agent only
SIDECAR_MODE = 0o600
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")  # it names files here: nothing else may pass
QCOW2_MAGIC = b"QFI\xfb"


def _progress_probe(progress: FetchProgress) -> Callable[[], bool]:
    """True when the download got further since the last call (a retry's deadline restarts)."""
    seen = progress.done

    def progressed() -> bool:
        nonlocal seen
        moved, seen = progress.done > seen, progress.done
        return moved
    return progressed


class CachedImage(msgspec.Struct, frozen=True, kw_only=True):
    """The sidecar of a cached file: what it is and which catalog image it came from."""

    sha256: str
    format: ImageFormat
    virtual_size: int
    image_id: str
    name: str = ""
    boot_id: str = ""  # the boot during which the file was last known complete and correct


_sidecar_decoder = msgspec.json.Decoder(CachedImage)


BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def current_boot_id() -> str:
    """This boot's id ('' when the kernel does not say: then every use re-verifies)."""
    try:
        return BOOT_ID_FILE.read_text().strip()
    except OSError:
        return ""


def qcow2_backing_file(path: Path) -> Path | None:
    """The backing file a qcow2 header names (resolved like QEMU does), or None."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
            if len(header) < 20 or header[:4] != QCOW2_MAGIC:
                return None
            offset, size = struct.unpack(">QI", header[8:20])
            if not offset or not size or size > 4096:
                return None
            f.seek(offset)
            name = f.read(size).decode(errors="replace")
    except OSError:
        return None
    backing = Path(name)
    return backing if backing.is_absolute() else path.parent / backing


class ImageCache:
    """``await cache.ensure(image_id, on_progress=...)`` -> a verified local file."""

    def __init__(
        self, settings: Settings, nc: Client, js: JetStreamContext,
        *, client: ImageLibraryClient | None = None,
    ) -> None:
        self._settings = settings
        self._js = js
        self._client = client or ImageLibraryClient(nc, timeout_s=settings.request_timeout_s)
        self.library = self._client  # images still importing are waited for through it
        self.transient_retry_s = settings.transient_retry_s  # ... with the one retry deadline
        self.root = settings.data_path / "cloud-images"
        self._partial = self.root / ".partial"
        self._vm_images = settings.data_path / "images"
        self._node = settings.effective_node_id
        self._max_bytes = int(settings.image_cache_max_gib * (1 << 30))
        self._boot_id = current_boot_id()
        self._flights: dict[str, asyncio.Task[LocalImage]] = {}
        self._listeners: dict[str, list[Progress]] = {}

    # -- public ---------------------------------------------------------------------------
    async def ensure(self, image_id: str, *, on_progress: Progress | None = None) -> LocalImage:
        """The image as a local file, fetched (once per node) when it is not here yet."""
        record = await self._resolve(image_id)
        if isinstance(record, CachedImage):
            reused = await self._reuse(record)
            if reused is None:
                raise ImageDownloadFailed(
                    f"the cached copy of {image_id!r} is damaged and the image library is "
                    "unreachable", image_id=image_id,
                )
            metrics.IMAGE_CACHE_REQUESTS.labels("hit").inc()  # the library unreachable
            return reused
        cached = self._lookup(record.sha256)
        if cached is not None:
            reused = await self._reuse(cached)
            if reused is not None:
                metrics.IMAGE_CACHE_REQUESTS.labels("hit").inc()
                return reused
        metrics.IMAGE_CACHE_REQUESTS.labels("miss").inc()
        flight = self._flights.get(record.sha256)
        if flight is None:
            flight = asyncio.create_task(self._fetch(record), name=f"fetch-{record.sha256[:12]}")
            self._flights[record.sha256] = flight
            self._listeners[record.sha256] = []
            flight.add_done_callback(lambda _: self._end_flight(record.sha256))
        if on_progress is not None:
            self._listeners.setdefault(record.sha256, []).append(on_progress)
        try:
            # shield: a caller that gives up does not cancel the download others wait for
            return await asyncio.shield(flight)
        finally:
            if on_progress is not None:
                with contextlib.suppress(ValueError, KeyError):
                    self._listeners[record.sha256].remove(on_progress)

    async def close(self) -> None:
        """Cancel downloads in flight (their partial files are removed)."""
        for task in list(self._flights.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def remove_orphaned_partials(self) -> int:
        """Remove what downloads of an earlier run left in ``.partial`` (call at start, before
        any fetch); the bytes freed."""
        if self._flights:
            return 0  # never under a download in flight
        return await asyncio.to_thread(self._remove_partials, set(), "*")

    def _remove_partials(self, keep: set[str], pattern: str = "*.part") -> int:
        """Remove partial files of downloads not in ``keep`` (sha256s in flight). While the
        agent runs only ``*.part`` (a sidecar's ``.json.tmp`` may be in the middle of its
        rename)."""
        freed = 0
        for path in self._partial.glob(pattern) if self._partial.is_dir() else ():
            if path.name.split(".", 1)[0] in keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                size = path.stat().st_size
                path.unlink()
                freed += size
                log.info("orphaned partial download removed", file=path.name, bytes=size)
        return freed

    def _partial_bytes(self) -> int:
        total = 0
        for path in self._partial.glob("*") if self._partial.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def cached(self) -> list[CachedImage]:
        """Every image in the cache."""
        found = []
        for sidecar in self.root.glob("*.json"):
            with contextlib.suppress(OSError, msgspec.DecodeError):
                entry = _sidecar_decoder.decode(sidecar.read_bytes())
                if self._file(entry).exists():
                    found.append(entry)
        return found

    # -- resolution -----------------------------------------------------------------------
    async def _resolve(self, image_id: str) -> ImageRecord | CachedImage:
        """The catalog record; when the library is unreachable, a cached copy will do."""
        try:
            record = await self._client.get(image_id)
        except Unavailable:
            for entry in await asyncio.to_thread(self.cached):
                if entry.image_id == image_id:
                    log.warning("image library unreachable; using the cached copy",
                                image_id=image_id)
                    return entry
            # Not here either: wait for the library (it may be restarting).
            record = await retry_transient(
                lambda: self._client.get(image_id), what="image library get",
                deadline_s=self._settings.transient_retry_s,
                transient=lambda exc: isinstance(exc, Unavailable), image_id=image_id)
        if record.state != ImageState.ACTIVE or not record.sha256:
            raise ImageNotReady(
                f"image {image_id!r} is {record.state}, not active"
                + (f" ({record.error})" if record.error else ""),
                image_id=image_id, state=record.state,
            )
        if record.format not in ("qcow2", "raw", "iso"):
            raise ImageNotReady(f"image {image_id!r} has unusable format {record.format!r}")
        if not SHA256_HEX.match(record.sha256):
            raise ImageNotReady(f"image {image_id!r} has no valid sha256 in its record")
        return record

    def _file(self, entry: CachedImage) -> Path:
        return self.root / f"{entry.sha256}.{entry.format}"

    def _lookup(self, sha256: str) -> CachedImage | None:
        try:
            entry = _sidecar_decoder.decode((self.root / f"{sha256}.json").read_bytes())
        except (OSError, msgspec.DecodeError):
            return None
        return entry if self._file(entry).exists() else None

    async def _reuse(self, entry: CachedImage) -> LocalImage | None:
        """A cached image, re-verified once if it was written during another boot."""
        if entry.boot_id != self._boot_id or not self._boot_id:
            sha256 = await sha256_of(self._file(entry))
            if sha256 != entry.sha256:
                log.warning("cached image damaged since the last boot; fetching it again",
                            image_id=entry.image_id, sha256=entry.sha256, actual=sha256)
                await asyncio.to_thread(self._remove, entry)
                return None
            entry = msgspec.structs.replace(entry, boot_id=self._boot_id)
            await asyncio.to_thread(self._write_sidecar, entry)
        return await self._touch(entry)

    def _remove(self, entry: CachedImage) -> None:
        for path in (self.root / f"{entry.sha256}.json", self._file(entry)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def _touch(self, entry: CachedImage) -> LocalImage:
        """Mark as recently used (the LRU order is the files' mtime) and return it."""
        path = self._file(entry)
        now = time.time()
        await asyncio.to_thread(os.utime, path, (now, now))
        return LocalImage(path=path, format=entry.format, virtual_size=entry.virtual_size,
                          sha256=entry.sha256)

    def _end_flight(self, sha256: str) -> None:
        self._flights.pop(sha256, None)
        self._listeners.pop(sha256, None)

    # -- fetching -------------------------------------------------------------------------
    def _make_dirs(self) -> None:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        ensure_traversable(self.root.parent)
        self.root.mkdir(mode=PARTIAL_DIR_MODE, exist_ok=True)
        restrict_dir(self.root)
        self._partial.mkdir(mode=PARTIAL_DIR_MODE, exist_ok=True)
        self._partial.chmod(PARTIAL_DIR_MODE)

    async def _fetch(self, record: ImageRecord) -> LocalImage:
        await asyncio.to_thread(self._make_dirs)
        part = self._partial / f"{record.sha256}.part"
        started = time.monotonic()
        try:
            sha256 = await self._download(record, part)
            if sha256 != record.sha256:
                raise ImageChecksumMismatch(
                    f"image {record.id!r}: received sha256 {sha256}, catalog says "
                    f"{record.sha256}", image_id=record.id,
                )
            entry = CachedImage(
                sha256=sha256, format=record.format,  # type: ignore[arg-type]
                virtual_size=record.virtual_size or 0, image_id=record.id, name=record.name,
                boot_id=self._boot_id,
            )
            await asyncio.to_thread(self._install, part, entry)
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        elapsed = time.monotonic() - started
        metrics.IMAGE_CACHE_DOWNLOADED.inc(record.file_size or 0)
        log.info("image cached", image_id=record.id, sha256=sha256, bytes=record.file_size,
                 seconds=round(elapsed, 2),
                 mib_per_s=round((record.file_size or 0) / (1 << 20) / max(elapsed, 1e-6), 1))
        await asyncio.to_thread(self._evict, {sha256} | set(self._flights))
        return await self._touch(entry)

    def _install(self, part: Path, entry: CachedImage) -> None:
        """Rename into place (atomic), then the sidecar."""
        restrict_file(part)
        os.replace(part, self._file(entry))
        self._write_sidecar(entry)

    def _write_sidecar(self, entry: CachedImage) -> None:
        """The sidecar, written under a temporary name and renamed."""
        tmp = self._partial / f"{entry.sha256}.json.tmp"
        tmp.write_bytes(msgspec.json.encode(entry))
        os.chmod(tmp, SIDECAR_MODE)
        os.replace(tmp, self.root / f"{entry.sha256}.json")

    async def _download(self, record: ImageRecord, part: Path) -> str:
        """Fetch the file, retrying transient failures (resuming the partial file) until
        ``transient_retry_s`` passes without a byte of progress."""
        url = f"{self._settings.effective_image_library_url}/images/{record.id}/file"
        secret = await asyncio.to_thread(load_or_create_secret, self._settings)
        token = sign(node_key(secret), service=f"{NODE_SERVICE_PREFIX}{self._node}",
                     image_id=record.id, method="GET")
        progress = FetchProgress()
        try:
            fetched = await retry_transient(
                lambda: self._download_once(record, url, part, bearer(token), progress),
                what="image download", deadline_s=self._settings.transient_retry_s,
                transient=lambda exc: isinstance(exc, FetchError) and exc.transient,
                progressed=_progress_probe(progress), image_id=record.id)
        except FetchError as exc:
            raise ImageDownloadFailed(
                f"fetching image {record.id!r} from the image library failed: {exc}",
                image_id=record.id, status=exc.status,
            ) from None
        return fetched.sha256

    async def _download_once(self, record: ImageRecord, url: str, part: Path,
                             headers: dict[str, str], progress: FetchProgress) -> Fetched:
        """One attempt in worker threads (images.fetch), reporting progress here."""
        cancel = threading.Event()
        fetching = asyncio.ensure_future(asyncio.to_thread(
            fetch, url, part, progress=progress, cancel=cancel, timeout_s=READ_TIMEOUT_S,
            headers=headers, resume=True,
        ))
        try:
            while not fetching.done():
                await asyncio.wait({fetching}, timeout=PROGRESS_INTERVAL_S)
                self._check_announced(record, progress)
                await self._progress(record, progress.done, progress.total)
            return fetching.result()
        finally:
            if not fetching.done():  # cancelled, or the announced checksum is wrong
                cancel.set()  # the threads stop at their next buffer
                await asyncio.wait({fetching})
                fetching.exception()  # FetchCancelled: expected, and retrieved here

    @staticmethod
    def _check_announced(record: ImageRecord, progress: FetchProgress) -> None:
        announced = progress.announced_sha256
        if announced and announced != record.sha256:
            raise ImageChecksumMismatch(
                f"image library serves sha256 {announced} for {record.id!r}, "
                f"the catalog says {record.sha256}", image_id=record.id,
            )

    async def _progress(self, record: ImageRecord, done: int, total: int | None) -> None:
        """Tell every waiting caller and publish an ``image.progress`` event (best effort)."""
        for listener in list(self._listeners.get(record.sha256, ())):
            try:
                await listener(done, total)
            except Exception as exc:
                log.warning("progress listener failed", error=str(exc))
        event = ImageProgress(image_id=record.id, node=self._node, bytes_done=done,
                              bytes_total=total)
        await publish_event(self._js, event, best_effort=True)

    # -- eviction -------------------------------------------------------------------------
    def backing_files_in_use(self) -> set[Path]:
        """Every file a VM overlay under ``<data_dir>/images/`` is backed by (a VM's disks, and
        the frozen snapshot bases of its linked clones, ``<vm>/bases/*.qcow2``)."""
        used: set[Path] = set()
        for overlay in [*self._vm_images.glob("*/*"), *self._vm_images.glob("*/bases/*")]:
            if overlay.is_file():
                backing = qcow2_backing_file(overlay)
                if backing is not None:
                    used.add(backing.resolve())
        return used

    def _evict(self, keep: set[str]) -> None:
        """Remove least recently used, unused images (not in ``keep``) until the cache fits.

        Partial files of downloads not in flight are orphans (a crash) and go first; those in
        flight count against the limit: they are on the disk as much as finished images.
        """
        self._remove_partials(keep)
        entries = []
        for entry in self.cached():
            with contextlib.suppress(FileNotFoundError):
                st = self._file(entry).stat()
                entries.append((st.st_mtime, st.st_size, entry))
        total = sum(size for _, size, _ in entries) + self._partial_bytes()
        if total <= self._max_bytes:
            return
        in_use = self.backing_files_in_use()
        for _, size, entry in sorted(entries, key=lambda e: e[0]):
            if total <= self._max_bytes:
                break
            path = self._file(entry)
            if entry.sha256 in keep or path.resolve() in in_use:
                continue
            self._remove(entry)
            total -= size
            log.info("image evicted from the cache", image_id=entry.image_id,
                     sha256=entry.sha256, bytes=size)
        if total > self._max_bytes:
            log.warning("image cache over its limit; every remaining image is in use",
                        bytes=total, limit=self._max_bytes)
