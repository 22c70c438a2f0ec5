"""Readiness follows a growing serial log: ready on "finished", failures raise, old boots ignored.

The logs are real: a Debian 12 guest (cloud-init 22.4) built by tests/support/guest_image.py,
booted under QEMU/TCG. They are written to the followed file progressively, in small pieces.
"""

from __future__ import annotations

import asyncio
import re
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from limiquantix.node_agent.readiness import (
    MAX_ADDRESSES,
    MAX_FAILURES,
    MAX_HOST_KEYS,
    MAX_LINE,
    ConsoleScan,
    GuestNotReady,
    GuestReadyTimeout,
    boot_start_offset,
    wait_for_guest_ready,
)

DATA = Path(__file__).parent / "data"
FIRST_BOOT = (DATA / "serial-first-boot.log").read_bytes()
# The same VM's next boot (same instance-id), up to its ACPI power-down, as QEMU appended it.
SECOND_BOOT = (DATA / "serial-second-boot.log").read_bytes()
# When the logged first boot began (its cloud-init stamps 17:55:30 ... 17:56:19).
LOGGED_BOOT_START = datetime(2026, 11, 25, 17, 55, 0, tzinfo=UTC)


def _expected_host_keys(log: bytes) -> list[str]:
    """The fingerprint lines as printed between the markers (an independent, simpler reading)."""
    block = log.split(b"BEGIN SSH HOST KEY FINGERPRINTS-----")[1].split(b"-----END")[0]
    return [m.decode() for m in re.findall(rb"\d+ SHA256:\S+ \S+ \([A-Z0-9]+\)", block)]


async def _write_progressively(path: Path, data: bytes, *, piece: int = 4096,
                               pause_s: float = 0.01) -> None:
    """Append ``data`` the way QEMU does: in pieces, not on line boundaries."""
    with path.open("ab") as f:
        for i in range(0, len(data), piece):
            f.write(data[i:i + piece])
            f.flush()
            await asyncio.sleep(pause_s)


def _finished_line(data: bytes) -> int:
    return data.index(b"finished at")


async def test_first_boot_becomes_ready_with_host_keys_and_addresses(tmp_path: Path) -> None:
    serial = tmp_path / "serial.log"
    started = datetime.now(UTC)
    writer = asyncio.create_task(_write_progressively(serial, FIRST_BOOT, piece=777))
    guest = await wait_for_guest_ready(serial, started_at=started, timeout_s=30, poll_s=0.02,
                                       settle_s=0.1)
    await writer
    assert guest.ssh_host_keys == tuple(_expected_host_keys(FIRST_BOOT))
    assert any(k.endswith("(ED25519)") for k in guest.ssh_host_keys)
    assert guest.addresses == ("10.0.2.15",)  # link/site/host scopes and lo left out
    assert guest.ready_at is not None and guest.boot_seconds is not None
    assert 0 < guest.boot_seconds < 30 and guest.cloud_init_error == ""


async def test_not_ready_before_the_finished_line(tmp_path: Path) -> None:
    serial = tmp_path / "serial.log"
    serial.write_bytes(FIRST_BOOT[:_finished_line(FIRST_BOOT)])
    with pytest.raises(GuestReadyTimeout) as caught:
        await wait_for_guest_ready(serial, started_at=datetime.now(UTC) - timedelta(seconds=1),
                                   timeout_s=0.5, poll_s=0.05)
    # What was learned so far travels with the error.
    assert caught.value.guest.ssh_host_keys == tuple(_expected_host_keys(FIRST_BOOT))
    assert caught.value.code == "guest_ready_timeout"


async def test_previous_boot_in_the_log_is_ignored(tmp_path: Path) -> None:
    """The log already holds a finished boot; the new boot has not printed anything yet."""
    serial = tmp_path / "serial.log"
    serial.write_bytes(FIRST_BOOT)
    started = datetime.now(UTC) + timedelta(seconds=1)  # the domain starts after the write
    with pytest.raises(GuestReadyTimeout):
        await wait_for_guest_ready(serial, started_at=started, timeout_s=0.6, poll_s=0.05)


async def test_second_boot_is_ready_and_reuses_the_earlier_host_keys(tmp_path: Path) -> None:
    """Later boots do not print the fingerprints again (same instance-id): keep the known ones."""
    assert b"FINGERPRINTS" not in SECOND_BOOT
    serial = tmp_path / "serial.log"
    serial.write_bytes(FIRST_BOOT)
    started = datetime.now(UTC)
    offset = boot_start_offset(serial, started)
    assert offset == len(FIRST_BOOT)  # the file is older than the boot: it starts at the end
    writer = asyncio.create_task(_write_progressively(serial, SECOND_BOOT, piece=3000))
    guest = await wait_for_guest_ready(serial, started_at=started, timeout_s=30, poll_s=0.02,
                                       settle_s=0.1, start_offset=offset)
    await writer
    assert guest.ssh_host_keys == tuple(_expected_host_keys(FIRST_BOOT))
    assert guest.addresses == ("10.0.2.15",)


async def test_a_boot_that_has_not_printed_yet_after_a_power_down_is_not_ready(
        tmp_path: Path) -> None:
    """Both earlier boots finished and the last one powered down: their lines do not count."""
    serial = tmp_path / "serial.log"
    serial.write_bytes(FIRST_BOOT + SECOND_BOOT)
    # Even with a start time before the last write (clock skew, a late watcher) the power-down
    # at the end tells that the next boot has not begun printing.
    started = datetime.now(UTC) - timedelta(minutes=5)
    assert boot_start_offset(serial, started) == len(FIRST_BOOT) + len(SECOND_BOOT)
    with pytest.raises(GuestReadyTimeout):
        await wait_for_guest_ready(serial, started_at=started, timeout_s=0.5, poll_s=0.05)


async def test_watcher_started_late_finds_the_last_boot_and_uses_the_guest_clock(
        tmp_path: Path) -> None:
    serial = tmp_path / "serial.log"
    serial.write_bytes(FIRST_BOOT + FIRST_BOOT)
    started = LOGGED_BOOT_START
    assert boot_start_offset(serial, started) >= len(FIRST_BOOT)
    guest = await wait_for_guest_ready(serial, started_at=started, timeout_s=5, settle_s=0)
    # "finished at Wed, 25 Nov 2026 17:56:19 +0000" in the log
    assert guest.ready_at == datetime(2026, 11, 25, 17, 56, 19, tzinfo=UTC)
    assert guest.boot_seconds == 79.0


def test_boot_start_after_a_shutdown_is_past_its_end(tmp_path: Path) -> None:
    serial = tmp_path / "serial.log"
    ending = b"[  120.5] reboot: Power down\r\n"
    serial.write_bytes(FIRST_BOOT + ending + b"GRUB loading.\r\n")
    offset = boot_start_offset(serial, datetime.now(UTC) - timedelta(hours=1))
    assert offset == len(FIRST_BOOT) + len(ending)


async def test_after_a_forced_stop_the_old_finished_line_is_not_taken_for_the_new_boot(
        tmp_path: Path) -> None:
    """No power-down line (destroyed), the new boot only printed GRUB so far."""
    serial = tmp_path / "serial.log"
    grub = b"\x1b[H\x1b[J  Booting `Debian GNU/Linux'\r\n"
    serial.write_bytes(FIRST_BOOT + grub)
    # The log's boot finished at 2026-11-25 17:56:19 by the guest's clock; this one began now,
    # just before the GRUB line was written.
    started = datetime.now(UTC) - timedelta(seconds=1)
    offset = boot_start_offset(serial, started)
    assert offset == len(FIRST_BOOT)  # just past the old "finished" line
    with pytest.raises(GuestReadyTimeout):
        await wait_for_guest_ready(serial, started_at=started, timeout_s=0.4, poll_s=0.05)


@pytest.mark.parametrize(
    ("injected", "fragment"),
    [
        (b"[   70.1] cloud-init[414]: 2026-11-25 17:56:10,123 - util.py[WARNING]: Running module "
         b"users-groups (<module 'cloudinit.config.cc_users_groups'>) failed\r\n",
         "users-groups"),
        (b"[FAILED] Failed to start \x1b[0;1;39mcloud-config.service\x1b[0m - Apply the "
         b"settings specified in cloud-config.\r\n", "cloud-config.service"),
    ],
)
async def test_failures_before_finished_raise_with_the_detail(
        tmp_path: Path, injected: bytes, fragment: str) -> None:
    cut = FIRST_BOOT.index(b"modules:final")
    cut = FIRST_BOOT.rindex(b"\n", 0, cut) + 1
    serial = tmp_path / "serial.log"
    writer = asyncio.create_task(
        _write_progressively(serial, FIRST_BOOT[:cut] + injected + FIRST_BOOT[cut:]))
    with pytest.raises(GuestNotReady) as caught:
        await wait_for_guest_ready(serial, started_at=datetime.now(UTC), timeout_s=30,
                                   poll_s=0.02, settle_s=0.2)
    await writer
    err = caught.value
    assert err.code == "guest_not_ready" and fragment in err.message
    assert fragment in err.guest.cloud_init_error
    assert err.guest.ssh_host_keys  # learned before the failure was reported


async def test_cloud_final_failing_after_the_final_message_is_a_failure(tmp_path: Path) -> None:
    """cloud-final prints "finished" and then exits non-zero: systemd's line comes right after."""
    serial = tmp_path / "serial.log"
    tail = b"[FAILED] Failed to start cloud-final.service - Execute cloud user/final scripts.\r\n"
    writer = asyncio.create_task(_write_progressively(serial, FIRST_BOOT + tail, piece=8192))
    with pytest.raises(GuestNotReady, match="cloud-final"):
        await wait_for_guest_ready(serial, started_at=datetime.now(UTC), timeout_s=30,
                                   poll_s=0.02, settle_s=0.5)
    await writer


async def test_no_seed_found_is_a_failure(tmp_path: Path) -> None:
    serial = tmp_path / "serial.log"
    serial.write_bytes(FIRST_BOOT.replace(
        b"Datasource DataSourceNoCloud [seed=/dev/sr0][dsmode=net]", b"Datasource DataSourceNone"))
    with pytest.raises(GuestNotReady, match="no seed"):
        await wait_for_guest_ready(serial, started_at=LOGGED_BOOT_START, timeout_s=5,
                                   settle_s=0)


def test_multibyte_characters_split_across_reads_are_decoded() -> None:
    scan = ConsoleScan()
    block = ("-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
             "256 SHA256:abcDEF123+/xyz root@hôte (ED25519)\n"
             "-----END SSH HOST KEY FINGERPRINTS-----\n").encode()
    split = block.index("ô".encode()) + 1  # inside the two-byte character
    scan.feed(block[:split])
    scan.feed(block[split:])
    assert scan.host_keys == ["256 SHA256:abcDEF123+/xyz root@hôte (ED25519)"]


# A guest writes the serial log: what a hostile one can make the node keep or spend is bounded.

def _fake_key_block(count: int) -> bytes:
    lines = [f"256 SHA256:{i:043d} root@evil (ED25519)" for i in range(count)]
    return ("-----BEGIN SSH HOST KEY FINGERPRINTS-----\n" + "\n".join(lines)
            + "\n-----END SSH HOST KEY FINGERPRINTS-----\n").encode()


def _fake_net_table(count: int) -> bytes:
    rows = [f"ci-info: | eth{i} | True | 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/24 "
            f"| 255.255.255.0 | global | 52:54:00:00:00:01 |" for i in range(count)]
    return ("ci-info: ++++++++++++++++++++Net device info+++++++++++++++++++++\n"
            + "\n".join(rows) + "\n").encode()


def test_a_line_without_end_is_kept_bounded_and_scanned_in_linear_time() -> None:
    """64 MiB with no newline, fed as QEMU appends it: memory stays small, work is linear."""
    chunk = b"A" * (1 << 20)
    scanned = []
    for mib in (32, 64):
        scan = ConsoleScan()
        tracemalloc.start()
        for _ in range(mib):
            scan.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 8 << 20, f"{peak} bytes held for {mib} MiB without a newline"
        scan.feed(b"\n" + FIRST_BOOT, final=True)  # the guest then boots normally
        assert scan.finished and scan.host_keys == _expected_host_keys(FIRST_BOOT)
        scanned.append(scan.scanned - len(FIRST_BOOT) - 1)
    assert scanned[0] <= 2 * (32 << 20) + MAX_LINE
    assert scanned[1] <= 2 * scanned[0] + MAX_LINE  # twice the input, twice the work


def test_ten_thousand_fake_host_keys_and_addresses_do_not_grow_the_record() -> None:
    scan = ConsoleScan()
    failures = b"".join(b"2026-11-25 Running module x%d failed\n" % i for i in range(10_000))
    scan.feed(_fake_key_block(10_000) + _fake_net_table(10_000) + failures, final=True)
    assert len(scan.host_keys) == MAX_HOST_KEYS
    assert len(scan.addresses) == MAX_ADDRESSES
    assert len(scan.failures) == MAX_FAILURES
    guest = scan.guest(ready_at=None, started_at=LOGGED_BOOT_START, error=scan.problem())
    assert len(msgspec.json.encode(guest)) < 16 << 10


async def test_hostile_log_before_a_real_boot_still_ends_ready_with_a_bounded_record(
        tmp_path: Path) -> None:
    """A 3 MiB line, then a boot whose host-key block has 10,000 entries."""
    begin = FIRST_BOOT.index(b"-----BEGIN SSH HOST KEY")
    end = FIRST_BOOT.index(b"\n", FIRST_BOOT.index(b"-----END SSH HOST KEY")) + 1
    boot = FIRST_BOOT[:begin] + _fake_key_block(10_000) + FIRST_BOOT[end:]
    serial = tmp_path / "serial.log"
    serial.write_bytes(b"x" * (3 << 20) + b"\n" + boot)
    guest = await wait_for_guest_ready(serial, started_at=LOGGED_BOOT_START, timeout_s=10,
                                       start_offset=0, settle_s=0)
    assert len(guest.ssh_host_keys) == MAX_HOST_KEYS
    assert guest.addresses and len(msgspec.json.encode(guest)) < 4 << 10
