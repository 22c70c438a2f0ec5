"""Benchmark: a 2 GiB image from the image library into a node cache, next to curl.

One command: ``.venv/bin/python bench/images.py [--size-gib 2] [--runs 3]``.

In the same run, on the same machine and the same file:
- baseline: ``curl -o FILE`` from nginx if installed, else ``python -m http.server``;
- ours: ``ImageCache.ensure()`` (catalog RPC over NATS, HTTP GET from the image library,
  sha256 while streaming, verified against the catalog, atomic rename) into an empty cache,
  in its own process like a node agent (timed inside it, after its imports).
Runs are interleaved, each after ``sync`` and a pause (no run pays for the previous one's
dirty pages). ``--store local|jetstream|both`` (default both): the library's file store
(``LQ_IMAGE_STORE``); with ``jetstream`` the import also puts the file into the replicated
Object Store, and before each run the library's local copy is removed, so every node download
is the case of an instance that never had the file: copied out of the Object Store, then
served. Prints both throughputs (MiB/s, median), CPU seconds, and the ratio (target >= 0.9).
On a shared machine the wall times are noisy: read the CPU seconds too.
Everything started here (nats-server, image library, http.server) is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nats

from limiquantix.common import nats_client
from limiquantix.common import settings as settings_mod
from limiquantix.common.images import CreateImageRequest
from limiquantix.common.nats_server import NatsServer, free_port
from limiquantix.common.process import stop_process
from limiquantix.image_library.client import ImageLibraryClient
from limiquantix.node_agent.images.cache import ImageCache

BLOCK = 64 << 20


def make_image(path: Path, size: int) -> None:
    """A qcow2 holding ``size`` bytes of incompressible data (random raw -> qemu-img convert)."""
    raw = path.with_suffix(".raw")
    with open(raw, "wb") as f:
        for _ in range(size // BLOCK):
            f.write(os.urandom(BLOCK))
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                   check=True)
    raw.unlink()


@contextlib.asynccontextmanager
async def process(args: list[str], *, env: dict[str, str] | None = None,
                  cwd: Path | None = None, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with open(log, "ab") as out:
        proc = await asyncio.create_subprocess_exec(*args, env=env, cwd=cwd, stdout=out,
                                                    stderr=out)
    try:
        yield proc
    finally:
        await stop_process(proc, 15)


async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(url)


@contextlib.asynccontextmanager
async def baseline_server(root: Path, log: Path) -> AsyncIterator[tuple[str, str]]:
    """nginx when present, else python -m http.server; yields (base URL, server name)."""
    port = free_port()
    nginx = shutil.which("nginx")
    if nginx:
        conf = root.parent / "nginx.conf"
        conf.write_text(
            f"daemon off; pid {root.parent}/nginx.pid; error_log {log};\n"
            f"events {{}}\nhttp {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{port};"
            f" root {root}; }} }}\n")
        async with process([nginx, "-c", str(conf), "-p", str(root.parent)], log=log):
            await wait_http(f"http://127.0.0.1:{port}/")
            yield f"http://127.0.0.1:{port}", "nginx"
        return
    async with process([sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)],
                       cwd=root, log=log):
        await wait_http(f"http://127.0.0.1:{port}/")
        yield f"http://127.0.0.1:{port}", "python -m http.server"


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def settle() -> None:
    """Flush earlier runs' dirty pages first, so no run pays for the one before it."""
    await asyncio.to_thread(os.sync)
    await asyncio.sleep(1.0)


async def curl_once(url: str, out: Path) -> tuple[float, float]:
    """Wall seconds and curl's CPU seconds."""
    await settle()
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec("curl", "-sS", "-f", "-o", str(out), url)
    if await proc.wait() != 0:
        raise RuntimeError(f"curl failed on {url}")
    elapsed = time.perf_counter() - start
    out.unlink()
    return elapsed, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu


async def main(size_gib: float, runs: int, store: str = "local") -> None:
    work = Path(tempfile.mkdtemp(prefix="lq-bench-images-", dir="/var/tmp"))
    files = work / "files"
    files.mkdir()
    image = files / "bench.qcow2"
    try:
        print(f"making a {size_gib:g} GiB image of random data ...", flush=True)
        make_image(image, int(size_gib * (1 << 30)))
        size = image.stat().st_size
        async with NatsServer(work / "nats", log_file=work / "nats.log") as nats_server:
            # The gateway lays out JetStream (the library only waits for it): do its part.
            async with nats_client.connect(nats_server.url, name="bench-setup") as setup:
                await nats_client.ensure_jetstream(setup.jetstream(), heartbeat_interval_s=5.0)
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
            env.update(LQ_NATS_URL=nats_server.url, LQ_DATA_DIR=str(work / "library"),
                       LQ_IMAGE_LIBRARY_PORT=str(port), LQ_LOG_FORMAT="json",
                       LQ_IMPORT_ALLOWED_NETWORKS="127.0.0.0/8",  # the baseline origin
                       LQ_IMAGE_LIBRARY_SECRET_FILE=str(work / "image-library.key"),
                       LQ_IMAGE_STORE=store)
            print(f"== image store: {store}", flush=True)
            library_bin = str(Path(sys.executable).parent / "lq-image-library")
            async with process([library_bin], env=env, log=work / "library.log"), \
                    baseline_server(files, work / "baseline.log") as (base, server_name):
                library_url = f"http://127.0.0.1:{port}"
                await wait_http(library_url + "/healthz")
                nc = await nats.connect(nats_server.url)
                try:
                    await bench(nc, nats_server.url, base, server_name, library_url, work, size,
                                runs, cold=store == "jetstream")
                finally:
                    await nc.drain()
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def ensure_in_child(nats_url: str, library_url: str, node_dir: Path, image_id: str,
                          sha256: str, size: int) -> tuple[float, float]:
    """ImageCache.ensure() in its own process, as in a node agent; its own time and CPU."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", nats_url, library_url, str(node_dir), image_id,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError("the cache child failed")
    result = json.loads(out.splitlines()[-1])  # the last line: earlier ones are logs
    if result["sha256"] != sha256 or result["size"] != size:
        raise RuntimeError(f"the cache returned a wrong file: {result}")
    return float(result["seconds"]), float(result["cpu"])


async def child(nats_url: str, library_url: str, node_dir: str, image_id: str) -> None:
    """One ensure() into an empty cache; prints its wall time and CPU (after imports)."""
    nc = await nats.connect(nats_url)
    try:
        # The library's secret (in the work dir, next to the node dirs) signs our requests.
        secret = Path(node_dir).parent / "image-library.key"
        settings = settings_mod.load({}, data_dir=node_dir, node_id="bench",
                                     image_library_url=library_url,
                                     image_library_secret_file=str(secret))
        cache = ImageCache(settings, nc, nc.jetstream())
        cpu = cpu_seconds(resource.RUSAGE_SELF)
        start = time.perf_counter()
        local = await cache.ensure(image_id)
        elapsed = time.perf_counter() - start
        print(json.dumps({"seconds": elapsed, "cpu": cpu_seconds(resource.RUSAGE_SELF) - cpu,
                          "sha256": local.sha256, "size": local.path.stat().st_size}))
    finally:
        await nc.drain()


async def bench(nc: nats.NATS, nc_url: str, base: str, server_name: str, library_url: str,
                work: Path, size: int, runs: int, *, cold: bool = False) -> None:
    client = ImageLibraryClient(nc, timeout_s=10)
    start = time.perf_counter()
    record = await client.import_image(CreateImageRequest(source_url=f"{base}/bench.qcow2",
                                                          name="bench"))
    while (record := await client.get(record.id)).state not in ("active", "error"):
        await asyncio.sleep(0.1)
    if record.state != "active":
        raise RuntimeError(record.error)
    imported_s = time.perf_counter() - start
    print(f"import into the library (download + sha256 + qemu-img check): {imported_s:.2f} s, "
          f"{size / (1 << 20) / imported_s:.0f} MiB/s", flush=True)

    mib = size / (1 << 20)
    curl_times, curl_cpu, ours_times, ours_cpu = [], [], [], []
    for run in range(runs):
        elapsed, cpu = await curl_once(f"{base}/bench.qcow2", work / "curl.out")
        curl_times.append(elapsed)
        curl_cpu.append(cpu)
        node_dir = work / f"node-{run}"
        if cold:  # the library copies the file out of the Object Store for this download
            (work / "library" / "image-library" / "files" / record.id).unlink(missing_ok=True)
        await settle()
        elapsed, cpu = await ensure_in_child(nc_url, library_url, node_dir, record.id,
                                             record.sha256, size)
        ours_times.append(elapsed)
        ours_cpu.append(cpu)
        shutil.rmtree(node_dir)
        print(f"run {run + 1}: curl {mib / curl_times[-1]:4.0f} MiB/s ({curl_cpu[-1]:.2f} s CPU)"
              f", cache {mib / ours_times[-1]:4.0f} MiB/s ({ours_cpu[-1]:.2f} s CPU)", flush=True)
    curl_rate = mib / statistics.median(curl_times)
    ours_rate = mib / statistics.median(ours_times)
    print()
    print(f"file: {mib:.0f} MiB, {runs} runs each (interleaved), medians; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"baseline  curl -o <- {server_name:22s} {curl_rate:6.0f} MiB/s  "
          f"{statistics.median(curl_cpu):.2f} s CPU  (no verification)")
    source = "Object Store" if cold else "library disk"
    print(f"ours      ImageCache <- {source:14s}  {ours_rate:6.0f} MiB/s  "
          f"{statistics.median(ours_cpu):.2f} s CPU  (sha256 verified, atomic rename)")
    print(f"ratio     {ours_rate / curl_rate:.2f}x  (target >= 0.90x)")
    best_curl, best_ours = mib / min(curl_times), mib / min(ours_times)
    print(f"best runs curl {best_curl:.0f} MiB/s, ours {best_ours:.0f} MiB/s: "
          f"{best_ours / best_curl:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        asyncio.run(child(*sys.argv[2:]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--store", choices=("local", "jetstream", "both"), default="both")
    args = parser.parse_args()
    for chosen in ("local", "jetstream") if args.store == "both" else (args.store,):
        asyncio.run(main(args.size_gib, args.runs, chosen))
