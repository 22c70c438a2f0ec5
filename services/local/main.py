"""``lq-local``: the whole system on this machine, in the foreground, until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from urllib.parse import urlparse

from limiquantix.common import settings as settings_mod
from limiquantix.common.runner import parse_arguments
from limiquantix.local.instance_lock import check_ports_free, instance_lock
from limiquantix.local.stack import Stack
from limiquantix.local.supervisor import Supervisor

BANNER = """
Limiquantix is running.
  API        {api}   (OpenAPI: {api}/v1/openapi.json, web UI: {api}/)
  API token  {token_file}
  NATS       {nats}   credentials: {nats_creds} (one seed per service)
  libvirt    {libvirt}   node: {node}
  data dir   {data}      logs: {logs}   PIDs: {run}
Try:  .venv/bin/lq node list     .venv/bin/lq image list
A service that exits is restarted (NATS first). Ctrl-C stops everything.
"""


# Settings the stack decides per service (each its data dir, NATS identity, secrets, ports).
STACK_OWNED = frozenset({
    "LQ_DATA_DIR", "LQ_NATS_URL", "LQ_NATS_CREDS", "LQ_API_TOKEN", "LQ_API_PORT",
    "LQ_IMAGE_LIBRARY_PORT", "LQ_IMAGE_LIBRARY_URL", "LQ_IMAGE_LIBRARY_SECRET_FILE",
    "LQ_LIBVIRT_URI", "LQ_NODE_ID",
})


def passed_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """Every other ``LQ_*`` setting the user gave, passed on to every service (a setting
    only one service reads is ignored by the others)."""
    return {k: v for k, v in environ.items() if k.startswith("LQ_") and k not in STACK_OWNED}


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats-cluster", type=int, default=1, metavar="N",
        help="run N nats-servers as one cluster (routes on loopback, one JetStream store "
             "each; streams and buckets get min(N, 3) replicas): kill one and the system "
             "keeps going. The first listens on LQ_NATS_URL's port, the others on free ports.")


async def _run(nats_cluster: int = 1) -> int:
    settings = settings_mod.load()
    data = settings.data_path
    nats_port = urlparse(settings.nats_url.split(",")[0]).port or 4222
    stack = Stack(
        data, libvirt_uri=settings.libvirt_uri, nodes=(settings.effective_node_id,),
        shared_data_dir=data, api_port=settings.api_port,
        image_library_port=settings.image_library_port, nats_port=nats_port,
        api_token=settings.api_token, extra_env=passed_settings(os.environ),
        nats_cluster=nats_cluster,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"Starting Limiquantix (data in {data}) ...", flush=True)
    with instance_lock(data):
        check_ports_free({"LQ_API_PORT": settings.api_port, "LQ_NATS_URL": nats_port,
                          "LQ_IMAGE_LIBRARY_PORT": settings.image_library_port})
        return await _serve(stack, settings, stop)


async def _serve(stack: Stack, settings: settings_mod.Settings, stop: asyncio.Event) -> int:
    data = settings.data_path
    supervisor = Supervisor(stack, data / "run")
    async with stack:
        print(BANNER.format(
            api=stack.api_url, token_file=stack.token_file, nats=stack.nats_url,
            nats_creds=stack.nats.auth_dir, libvirt=settings.libvirt_uri,
            node=settings.effective_node_id, data=data, logs=data / "logs",
            run=supervisor.run_dir,
        ), flush=True)
        code = await supervisor.run(stop)
        print("Stopping ...", flush=True)
    return code


def main() -> None:
    """Entry point of ``lq-local``."""
    args = parse_arguments("lq-local", "The whole Limiquantix system on this machine (NATS, "
                           "image library, a node agent, the API), in the foreground until "
                           "Ctrl-C.", options=_options)
    if args.nats_cluster < 1:
        print("error: --nats-cluster needs at least 1 server", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(asyncio.run(_run(args.nats_cluster)))
    except (TimeoutError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
