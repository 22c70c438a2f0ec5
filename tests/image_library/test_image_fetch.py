"""The node's pipelined HTTP fetch against a real local server: exact bytes, failures, cancel."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from limiquantix.node_agent.image_fetch import FetchCancelled, FetchError, FetchProgress, fetch
from tests.image_library.conftest import make_qcow2_with_data, sha256_file
from tests.image_library.origin import Origin


async def test_fetch_writes_the_exact_file_and_its_sha256(origin: Origin, tmp_path: Path) -> None:
    source = make_qcow2_with_data(origin.root / "f.qcow2", mib=9)  # not a multiple of buffers
    progress = FetchProgress()
    fetched = await asyncio.to_thread(fetch, origin.file_url("f.qcow2"), tmp_path / "out",
                                      progress=progress, cancel=threading.Event())
    assert fetched.sha256 == sha256_file(source) == sha256_file(tmp_path / "out")
    assert fetched.size == progress.done == progress.total == source.stat().st_size


async def test_fetch_reports_a_truncated_transfer(origin: Origin, tmp_path: Path) -> None:
    make_qcow2_with_data(origin.root / "f.qcow2")
    with pytest.raises(FetchError, match=r"IncompleteRead|ended after"):
        await asyncio.to_thread(fetch, origin.file_url("f.qcow2", truncate=1 << 20),
                                tmp_path / "out", progress=FetchProgress(),
                                cancel=threading.Event())


async def test_fetch_reports_the_http_status(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as caught:
        await asyncio.to_thread(fetch, f"{origin.url}/status/404", tmp_path / "out",
                                progress=FetchProgress(), cancel=threading.Event())
    assert caught.value.status == 404


async def test_fetch_stops_when_cancelled(origin: Origin, tmp_path: Path) -> None:
    source = make_qcow2_with_data(origin.root / "f.qcow2")
    cancel = threading.Event()
    progress = FetchProgress()
    task = asyncio.ensure_future(asyncio.to_thread(
        fetch, origin.file_url("f.qcow2", rate=1 << 20), tmp_path / "out", progress=progress,
        cancel=cancel))
    while progress.done == 0:
        await asyncio.sleep(0.01)
    cancel.set()
    with pytest.raises(FetchCancelled):
        await asyncio.wait_for(task, 10)
    assert (tmp_path / "out").stat().st_size < source.stat().st_size
