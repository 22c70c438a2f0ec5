"""Inspection before ``active`` (unsafe qcow2, ISO, lies about the format) and file serving."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pycdlib
import pytest

from limiquantix.common import qemu_img
from limiquantix.common.images import CreateImageRequest
from limiquantix.common.qemu_img import ISO9660_MAGIC, ISO9660_MAGIC_OFFSET, is_iso9660
from limiquantix.image_library.client import ImageLibraryClient
from tests.support.images import Library, wait_image
from tests.support.origin import Origin


async def _import(client: ImageLibraryClient, url: str, **fields: str) -> tuple[str, str, str]:
    record = await client.import_image(CreateImageRequest(source_url=url, **fields))
    done = await wait_image(client, record.id, "active", "error")
    return record.id, done.state, done.error


async def test_qcow2_with_a_backing_file_is_rejected(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    crafted = origin.root / "crafted.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/shadow",
                    "-u", str(crafted), "1G"], check=True)
    image_id, state, error = await _import(client, origin.file_url("crafted.qcow2"))
    assert state == "error"
    assert "unsafe_image" in error and "backing file" in error
    assert "/etc/shadow" not in error  # the record is no oracle of host paths
    assert library.leftovers(image_id) == []


def _stamp_iso_signature(path: Path) -> None:
    """Write the ISO 9660 signature where a reader looks for it (inside qcow2's first cluster)."""
    with open(path, "r+b") as f:
        f.seek(ISO9660_MAGIC_OFFSET)
        f.write(ISO9660_MAGIC)


async def test_qcow2_iso_polyglot_with_a_backing_file_is_refused_not_stored_as_iso(
    library: Library, client: ImageLibraryClient, origin: Origin,
) -> None:
    """A qcow2 naming /etc/shadow with ``CD001`` at 0x8001 passed as an inert ``iso``."""
    crafted = origin.root / "polyglot.iso"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/shadow",
                    "-u", str(crafted), "1G"], check=True)
    _stamp_iso_signature(crafted)
    assert is_iso9660(crafted)
    assert json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(crafted)],
                                     capture_output=True, check=True).stdout)["format"] == "qcow2"
    for declared in ("", "iso"):
        image_id, state, error = await _import(client, origin.file_url("polyglot.iso"),
                                               **({"format": declared} if declared else {}))
        assert state == "error", (declared, error)
        assert "polyglot" in error and "/etc/shadow" not in error
        assert library.leftovers(image_id) == []


async def test_a_clean_qcow2_that_also_claims_iso_is_refused(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    _stamp_iso_signature(disk)
    _, state, error = await _import(client, origin.file_url("disk.qcow2"))
    assert state == "error" and "polyglot" in error


async def test_unreadable_image_error_names_no_library_path(
    library: Library, client: ImageLibraryClient, origin: Origin,
) -> None:
    (origin.root / "broken.qcow2").write_bytes(b"QFI\xfb\x00\x00\x00\x03" + b"x" * 4096)
    image_id, state, error = await _import(client, origin.file_url("broken.qcow2"))
    assert state == "error" and "qemu-img cannot read the file" in error
    assert str(library.store) not in error and ".part" not in error and image_id not in error


async def test_qemu_img_runs_under_address_space_and_cpu_limits(disk: Path) -> None:
    """The same file: read under the normal limits, killed under a 32 MiB address space."""
    status, stdout, _ = await qemu_img.run_limited(["info", "--output=json", str(disk)],
                                                   qemu_img.INFO_LIMITS)
    assert status == 0 and json.loads(stdout)["format"] == "qcow2"
    tiny = qemu_img.Limits(address_space=32 << 20, cpu_s=5, timeout_s=30)
    status, _, _ = await qemu_img.run_limited(["info", "--output=json", str(disk)], tiny)
    assert status != 0


async def test_qcow2_with_an_external_data_file_is_rejected(
    library: Library, client: ImageLibraryClient, origin: Origin,
) -> None:
    crafted = origin.root / "datafile.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                    f"data_file={origin.root / 'outside.raw'}", str(crafted), "16M"], check=True)
    image_id, state, error = await _import(client, origin.file_url("datafile.qcow2"))
    assert state == "error"
    assert "unsafe_image" in error and "data file" in error
    assert library.leftovers(image_id) == []


async def test_raw_garbage_declared_as_qcow2_is_rejected_with_a_clear_reason(
    library: Library, client: ImageLibraryClient, origin: Origin,
) -> None:
    (origin.root / "garbage.qcow2").write_bytes(b"this is not a disk image\n" * 50_000)
    image_id, state, error = await _import(client, origin.file_url("garbage.qcow2"),
                                           format="qcow2")
    assert state == "error"
    assert "declared qcow2 but the file is raw data" in error
    assert library.leftovers(image_id) == []


async def test_iso9660_file_is_detected_and_stored_as_iso(
    library: Library, client: ImageLibraryClient, origin: Origin,
) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident="INSTALL")
    iso.add_fp(io.BytesIO(b"hello"), 5, "/README.;1")
    iso.write(str(origin.root / "install.iso"))
    iso.close()
    image_id, state, error = await _import(client, origin.file_url("install.iso"))
    assert state == "active", error
    record = await client.get(image_id)
    assert record.format == "iso"
    assert record.virtual_size == (origin.root / "install.iso").stat().st_size


async def test_a_disk_declared_as_iso_is_rejected(
    library: Library, client: ImageLibraryClient, origin: Origin, disk: Path,
) -> None:
    _, state, error = await _import(client, origin.file_url("disk.qcow2"), format="iso")
    assert state == "error" and "no ISO9660 signature" in error


@pytest.fixture
async def served(library: Library, client: ImageLibraryClient, origin: Origin,
                 disk: Path) -> tuple[str, bytes]:
    image_id, state, error = await _import(client, origin.file_url("disk.qcow2"))
    assert state == "active", error
    return image_id, disk.read_bytes()


async def test_get_serves_the_whole_file_with_etag_length_and_checksum(
    library: Library, served: tuple[str, bytes],
) -> None:
    image_id, data = served
    async with library.session() as http:
        async with http.get(f"{library.url}/images/{image_id}/file") as response:
            body = await response.read()
            assert response.status == 200
            assert response.headers["Content-Length"] == str(len(data))
            assert response.headers["X-Checksum-Sha256"] == sha256_file_bytes(data)
            assert response.headers["ETag"]
            assert response.headers["Accept-Ranges"] == "bytes"
        assert body == data
        async with http.head(f"{library.url}/images/{image_id}/file") as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(len(data))
            assert await response.read() == b""


def sha256_file_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("range_header, piece", [
    ("bytes=0-99", slice(0, 100)),
    ("bytes=1000-5999", slice(1000, 6000)),
    ("bytes=-512", slice(-512, None)),
])
async def test_range_requests_answer_206_with_exactly_those_bytes(
    library: Library, served: tuple[str, bytes], range_header: str, piece: slice,
) -> None:
    image_id, data = served
    async with library.session() as http, http.get(
        f"{library.url}/images/{image_id}/file", headers={"Range": range_header},
    ) as response:
        assert response.status == 206
        body = await response.read()
        assert body == data[piece]
        start = piece.start if piece.start >= 0 else len(data) + piece.start
        assert response.headers["Content-Range"] == (
            f"bytes {start}-{start + len(body) - 1}/{len(data)}"
        )


async def test_range_beyond_the_end_answers_416(
    library: Library, served: tuple[str, bytes],
) -> None:
    image_id, data = served
    async with library.session() as http, http.get(
        f"{library.url}/images/{image_id}/file", headers={"Range": f"bytes={len(data)}-"},
    ) as response:
        assert response.status == 416
        assert response.headers["Content-Range"] == f"bytes */{len(data)}"


async def test_file_of_an_image_that_is_not_active_is_refused(
    library: Library, client: ImageLibraryClient,
) -> None:
    async with library.session() as http, http.get(
        f"{library.url}/images/debian-12/file",
    ) as response:
        assert response.status == 409
        problem = await response.json(content_type=None)
        assert problem["code"] == "image_not_active"
    async with library.session() as http, http.get(
        f"{library.url}/images/nope/file",
    ) as response:
        assert response.status == 404
