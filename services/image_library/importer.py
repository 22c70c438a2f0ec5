"""Imports from a URL: streamed to ``partial/``, hashed on the way, resumable after a restart.

A restart resumes with ``Range: bytes=N-`` plus ``If-Range`` (the source's ETag or
Last-Modified saved next to the partial file); a source that does not honour it answers 200
and the download restarts cleanly from zero. Without a validator there is no resume: a changed
source could otherwise splice two different files into one.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import msgspec
import structlog

from limiquantix.common.hashing_file import HashingFile, sha256_of
from limiquantix.common.images import ImageRecord, ImageState
from limiquantix.common.model import Model
from limiquantix.common.outbound import (
    HostNotResolved,
    OutboundPolicy,
    OutboundRefused,
    TooManyRedirects,
    client_session,
    fetch,
)
from limiquantix.common.settings import Settings
from limiquantix.image_library.errors import ImportFailed
from limiquantix.image_library.finalize import fail, reason_of, verify_and_activate
from limiquantix.image_library.layout import StoreLayout
from limiquantix.image_library.progress import ProgressReporter
from limiquantix.image_library.store import ImageStore

log = structlog.get_logger()

CHUNK = 1 << 20
MAX_REDIRECTS = 5
CONNECT_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 60.0  # no byte for this long: the source is gone


class ResumeInfo(Model, frozen=True, kw_only=True):
    """What was known of the source when the partial file was started."""

    url: str
    etag: str = ""
    last_modified: str = ""


_resume_decoder = msgspec.json.Decoder(ResumeInfo)


def import_policy(settings: Settings) -> OutboundPolicy:
    """The outbound address policy of imports (``LQ_IMPORT_ALLOWED_SCHEMES`` / ``_NETWORKS``)."""
    return OutboundPolicy.for_imports(schemes=settings.import_allowed_schemes,
                                      networks=settings.import_allowed_networks)


async def check_source_url(url: str, settings: Settings) -> None:
    """Refuse at once a URL the import would refuse (scheme, credentials, address).

    A name that does not resolve now is not refused here: the download records why it failed
    (and resolves again, checking again, when it connects).
    """
    policy = import_policy(settings)
    host = policy.check_url(url)
    with contextlib.suppress(HostNotResolved):
        await policy.resolve(host)


class Importer:
    """Runs one download task per image; tasks are cancelled by DELETE and at shutdown."""

    def __init__(self, settings: Settings, store: ImageStore, layout: StoreLayout) -> None:
        self._settings = settings
        self._store = store
        self._layout = layout
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._policy = import_policy(settings)

    async def __aenter__(self) -> Importer:
        self._session = client_session(
            self._policy,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S
            ),
            auto_decompress=False,  # the bytes of the file, exactly as served
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop every download where it is: the partial file is resumed at the next start."""
        for image_id in list(self._tasks):
            await self.cancel(image_id)
        if self._session is not None:
            await self._session.close()

    def running(self, image_id: str) -> bool:
        return image_id in self._tasks

    def start(self, image_id: str) -> None:
        """Start (or resume) the download of a queued image; no-op if it already runs."""
        if image_id in self._tasks:
            return
        task = asyncio.create_task(self._run(image_id), name=f"import-{image_id}")
        self._tasks[image_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(image_id, None))

    async def cancel(self, image_id: str) -> None:
        task = self._tasks.get(image_id)
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self, image_id: str) -> None:
        bound = log.bind(image_id=image_id)
        try:
            record, _ = await self._store.get(image_id)
            sha256 = await self._download(record)
            await verify_and_activate(self._store, self._layout, image_id, sha256=sha256)
        except asyncio.CancelledError:
            bound.info("import stopped")  # cancelled by DELETE (which cleans up) or shutdown
            raise
        except Exception as exc:
            if not isinstance(exc, ImportFailed | OutboundRefused):
                bound.exception("import failed")
            await fail(self._store, self._layout, image_id, reason_of(exc))

    def _load_resume(self, record: ImageRecord) -> tuple[int, ResumeInfo | None]:
        part, meta = self._layout.part(record.id), self._layout.resume_meta(record.id)
        try:
            info = _resume_decoder.decode(meta.read_bytes())
            size = part.stat().st_size
        except (FileNotFoundError, msgspec.DecodeError):
            return 0, None
        if info.url != record.source_url or not (info.etag or info.last_modified):
            return 0, None
        return size, info

    async def _download(self, record: ImageRecord) -> str:
        """Fetch the source into the partial file; returns its sha256."""
        assert self._session is not None
        offset, resume = self._load_resume(record)
        await self._store.update(record.id, lambda r: msgspec.structs.replace(
            r, state=ImageState.DOWNLOADING, error="", bytes_done=offset,
        ))
        headers = {"Accept-Encoding": "identity"}
        if offset and resume is not None:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = resume.etag or resume.last_modified
        try:
            async with fetch(
                self._session, self._policy, record.source_url, headers=headers,
                max_redirects=MAX_REDIRECTS,
            ) as response:
                if response.status == 416 and offset and response.headers.get(
                    "Content-Range", ""
                ) == f"bytes */{offset}":
                    # Stopped after the last byte arrived (e.g. while verifying): complete.
                    return await sha256_of(self._layout.part(record.id))
                offset = self._accepted_offset(response, offset)
                return await self._receive(record, response, offset)
        except TooManyRedirects as exc:
            raise ImportFailed(exc.message) from None
        # The exceptions' texts are not recorded: aiohttp's quote what the peer sent, and a
        # record's error must not become a banner grabber for whatever answers at the URL.
        except aiohttp.ClientPayloadError:
            raise ImportFailed("transfer truncated (the connection ended early)") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ImportFailed(f"download failed: {type(exc).__name__}") from None

    @staticmethod
    def _accepted_offset(response: aiohttp.ClientResponse, offset: int) -> int:
        """Where the body starts in the file: ``offset`` on a matching 206, else 0."""
        if response.status == 206 and offset:
            content_range = response.headers.get("Content-Range", "")
            if content_range.startswith(f"bytes {offset}-"):
                return offset
            raise ImportFailed(f"source answered an unexpected range: {content_range!r}")
        if response.status == 200:
            return 0
        if response.status == 416 and offset:
            raise ImportFailed("source refused to resume (416); import again to restart")
        # The status only: the reason phrase is the peer's text (see _download).
        raise ImportFailed(f"source answered HTTP {response.status}", status=response.status)

    async def _receive(
        self, record: ImageRecord, response: aiohttp.ClientResponse, offset: int,
    ) -> str:
        part = self._layout.part(record.id)
        length = response.content_length
        total = offset + length if length is not None else None
        validators = ResumeInfo(
            url=record.source_url, etag=response.headers.get("ETag", ""),
            last_modified=response.headers.get("Last-Modified", ""),
        )
        self._layout.resume_meta(record.id).write_bytes(msgspec.json.encode(validators))
        out = await (HashingFile.open_at(part, offset) if offset else HashingFile.create(part))
        progress = ProgressReporter(self._store, record.id, total=total, start=offset)
        try:
            await progress.report(out.size)
            async for chunk in response.content.iter_chunked(CHUNK):
                await out.write(chunk)
                await progress.advance(out.size)
        finally:
            await out.close()
        if total is not None and out.size != total:
            raise ImportFailed(f"transfer truncated: got {out.size} of {total} bytes")
        await progress.report(out.size)
        log.info("download complete", image_id=record.id, bytes=out.size, resumed_at=offset)
        return out.hexdigest()
