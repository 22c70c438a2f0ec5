"""``lq-image-library``: the catalog over NATS and image files over HTTP, in one process."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import web

from limiquantix.common import subjects
from limiquantix.common.http_guard import GuardedSite, runner_options
from limiquantix.common.library_tokens import load_or_create_secret
from limiquantix.common.nats_client import (
    IMAGE_LIBRARY_STREAMS,
    bucket,
    connect,
    object_stream,
    wait_for_jetstream,
)
from limiquantix.common.runner import run_service
from limiquantix.common.settings import Settings
from limiquantix.image_library import catalog, rpc
from limiquantix.image_library.file_store import ReplicatedFiles
from limiquantix.image_library.http_server import SHUTDOWN_TIMEOUT_S, make_app
from limiquantix.image_library.importer import Importer
from limiquantix.image_library.layout import StoreLayout
from limiquantix.image_library.service import ImageService
from limiquantix.image_library.store import ImageStore

log = structlog.get_logger()


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run until ``stop``; downloads in flight are left resumable, uploads fail cleanly."""
    async with contextlib.AsyncExitStack() as stack:
        nc = await stack.enter_async_context(connect(
            settings.nats_url, name="image-library", creds=settings.nats_creds,
            ca_file=settings.nats_ca_file))
        js = nc.jetstream()
        replicated = _replicated(settings)
        await wait_for_jetstream(js, (*IMAGE_LIBRARY_STREAMS, *(
            [object_stream(subjects.IMAGE_FILES_BUCKET)] if replicated else [])))
        store = ImageStore(await bucket(js, subjects.IMAGES_BUCKET), js)
        layout = StoreLayout(settings.data_path)
        await asyncio.to_thread(layout.create)
        if replicated:
            layout.replica = ReplicatedFiles(
                await js.object_store(subjects.IMAGE_FILES_BUCKET), layout)
        importer = await stack.enter_async_context(Importer(settings, store, layout))
        service = ImageService(settings, store, layout, importer)
        await catalog.seed(store, settings.catalog_mirror)
        await service.recover()

        secret = await asyncio.to_thread(load_or_create_secret, settings)
        runner = web.AppRunner(
            make_app(service, secret), shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None,
            **runner_options(header_timeout_s=settings.http_header_timeout_s),
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = GuardedSite(runner, settings.image_library_host, settings.image_library_port,
                           max_connections=settings.http_max_connections)
        await site.start()

        subscription = await rpc.subscribe(nc, service)
        stack.push_async_callback(subscription.unsubscribe)
        log.info("image library ready", url=settings.effective_image_library_url,
                 store=str(layout.root), image_store=settings.image_store)
        await stop.wait()
        log.info("image library stopping")


def _replicated(settings: Settings) -> bool:
    """True for ``LQ_IMAGE_STORE=jetstream``, False for ``local``; anything else is refused."""
    if settings.image_store not in ("local", "jetstream"):
        raise ValueError(f"LQ_IMAGE_STORE must be local or jetstream, not "
                         f"{settings.image_store!r}")
    return settings.image_store == "jetstream"


def main() -> None:
    run_service("image-library", serve,
                "The Limiquantix image library: catalog over NATS, image files over HTTP.")
