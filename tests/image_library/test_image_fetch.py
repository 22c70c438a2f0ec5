"""The node's pipelined HTTP fetch against a real local server: exact bytes, failures, cancel."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from limiquantix.common.nats_server import free_port
from limiquantix.node_agent.images.fetch import FetchCancelled, FetchError, FetchProgress, fetch
from tests.support.disks import make_qcow2_with_data, sha256_file
from tests.support.origin import Origin


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


async def test_a_refused_connection_and_a_5xx_are_transient_a_404_is_final(
        origin: Origin, tmp_path: Path) -> None:
    def attempt(url: str) -> FetchError:
        with pytest.raises(FetchError) as caught:
            fetch(url, tmp_path / "out", progress=FetchProgress(), cancel=threading.Event())
        return caught.value

    closed = free_port()  # nothing listens there
    assert (await asyncio.to_thread(attempt, f"http://127.0.0.1:{closed}/f")).transient
    for status, transient in ((503, True), (500, True), (429, True), (404, False),
                              (403, False)):
        error = await asyncio.to_thread(attempt, f"{origin.url}/status/{status}")
        assert (error.status, error.transient) == (status, transient)
    make_qcow2_with_data(origin.root / "f.qcow2")
    cut = await asyncio.to_thread(attempt, origin.file_url("f.qcow2", truncate=1 << 20))
    assert cut.transient  # the peer went away mid-body


async def test_a_resumed_fetch_asks_for_the_rest_and_hashes_the_whole_file(
        origin: Origin, tmp_path: Path) -> None:
    source = make_qcow2_with_data(origin.root / "f.qcow2", mib=6)
    out = tmp_path / "out"
    with pytest.raises(FetchError):
        await asyncio.to_thread(fetch, origin.file_url("f.qcow2", truncate=(2 << 20) + 123),
                                out, progress=FetchProgress(), cancel=threading.Event())
    have = out.stat().st_size
    assert 0 < have < source.stat().st_size
    progress = FetchProgress()
    fetched = await asyncio.to_thread(fetch, origin.file_url("f.qcow2"), out, progress=progress,
                                      cancel=threading.Event(), resume=True)
    assert origin.ranges[-1] == f"bytes={have}-"
    assert fetched.sha256 == sha256_file(source) == sha256_file(out)
    assert fetched.size == progress.done == progress.total == source.stat().st_size


async def test_a_resume_the_server_answers_with_the_whole_file_starts_over(
        origin: Origin, tmp_path: Path) -> None:
    source = make_qcow2_with_data(origin.root / "f.qcow2")
    out = tmp_path / "out"
    out.write_bytes(b"x" * 4096)  # not a prefix of the file: If-Range would say so
    # The origin ignores Range when If-Range does not match: a 200 with the whole file.
    fetched = await asyncio.to_thread(fetch, origin.file_url("f.qcow2"), out,
                                      progress=FetchProgress(), cancel=threading.Event(),
                                      resume=True, headers={"If-Range": '"other"'})
    assert fetched.sha256 == sha256_file(source) == sha256_file(out)
