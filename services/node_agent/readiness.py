"""Guest readiness from the serial console log: "running" becomes "ready" when cloud-init is done.

cloud-init writes to the serial console (the image's kernel command line ends in
``console=ttyS0``), so the log QEMU appends to tells us, without an agent in the guest:
- ``Cloud-init v. X finished at ...``: the guest is ready;
- failure lines (a module that failed, an ERROR, a cloud-init unit systemd failed to start, the
  ``None`` datasource meaning the seed was not found): :class:`GuestNotReady` with the detail;
- the ``-----BEGIN SSH HOST KEY FINGERPRINTS-----`` block (printed on an instance's first boot),
  so clients can check the host key on first login instead of trusting it blindly;
- the ``ci-info`` "Net device info" table: the guest's global addresses.

The log is appended across boots (``append='on'``); only output of the current boot counts.
Its start is an explicit offset, or found by :func:`boot_start_offset` from ``started_at``.

The guest writes this log, so it is hostile input: a line is cut at ``MAX_LINE`` characters
(a gigabyte without a newline costs linear time and ``MAX_LINE`` of memory), and what goes
into the record is bounded in count and size (host keys, addresses, failures).
"""

from __future__ import annotations

import asyncio
import codecs
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import structlog

from limiquantix.common.vms import GuestAddress, GuestInfo
from limiquantix.node_agent.errors import NodeAgentError

log = structlog.get_logger()

POLL_S = 0.25
# After the "finished" line, wait this long for a failure that systemd prints just after it
# (cloud-final exits non-zero *after* printing the final message).
SETTLE_S = 1.5
READ_CHUNK = 1 << 20
# How far back to look for the previous boots' host keys (not printed again on later boots).
HOST_KEY_LOOKBACK = 8 << 20
# A "finished" stamped this long before the boot's start is an earlier boot's (guest RTC: UTC).
STALE_FINISH_S = timedelta(seconds=5)
# Bounds on what the guest can make us keep (cloud-init prints 3-4 host keys, 1-2 addresses).
MAX_LINE = 2048  # characters of one console line (real ones: < 600); the rest is dropped
MAX_HOST_KEYS = 16
MAX_HOST_KEY_LEN = 256
MAX_ADDRESSES = 16
MAX_ADDRESS_LEN = 64  # an IPv6 address is at most 45
MAX_FAILURES = 20


class GuestNotReady(NodeAgentError):
    """cloud-init failed in the guest or did not finish; ``guest`` holds what was learned."""

    code = "guest_not_ready"
    default_hint = (
        "Read the console log (GET /v1/vms/{id}/console-log): check the user-data, the "
        "network-config and that the image runs cloud-init with the NoCloud datasource."
    )

    def __init__(self, message: str, *, guest: GuestInfo | None = None, hint: str = "",
                 **details: Any) -> None:
        super().__init__(message, hint=hint, **details)
        self.guest = guest or GuestInfo(cloud_init_error=message)


class GuestReadyTimeout(GuestNotReady):
    """cloud-init did not report "finished" in time."""

    code = "guest_ready_timeout"
    default_hint = (
        "The guest may still be booting (TCG is slow) or its image lacks cloud-init or "
        "console=ttyS0 on the kernel command line; read the console log."
    )


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[c78]|\x1b[()][0-9A-Za-z]")
_FINISHED = re.compile(
    r"Cloud-init v\. (?P<version>\S+) finished at (?P<at>.+?)\. Datasource (?P<ds>\S+)"
)
_FP_BEGIN = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
_FP_END = "-----END SSH HOST KEY FINGERPRINTS-----"
_FP_LINE = re.compile(r"(?<!\S)(\d+) (SHA256:[A-Za-z0-9+/=]+) (.*) \(([A-Z0-9-]+)\)\s*$")
_NET_TABLE = re.compile(r"ci-info: \+*Net device info\+*")
_NET_ROW = re.compile(
    r"ci-info: \|\s*(?P<dev>[^|\s]+)\s*\|\s*(?:True|False)\s*\|\s*(?P<addr>[^|\s]+)\s*\|"
    r"\s*[^|]*\|\s*(?P<scope>[^|\s]+)\s*\|"
)
_FAILURES = (
    re.compile(r"Running module (?P<what>\S+) .*failed"),
    re.compile(r"\.py\[(?:ERROR|CRITICAL)\]: (?P<what>.*)"),
    re.compile(r"failed stage (?P<what>\S+)"),
    re.compile(r"Failed to start (?P<what>.*cloud.*)", re.IGNORECASE),
)
_FATAL = re.compile(r"Failed to start cloud-final|Failed to start .*Execute cloud user/final")
_KERNEL_BANNER = re.compile(rb"\] Linux version \d|^Linux version \d", re.M)
_FIRMWARE_BANNER = re.compile(rb"SeaBIOS \(version ")
_FINISHED_BYTES = re.compile(rb"Cloud-init v\. \S+ finished at (?P<at>.+?)\. Datasource")
_BOOT_END = re.compile(rb"reboot: (?:Power down|Restarting system|System halted)[^\n]*\n?")


def clean_line(raw: str) -> str:
    """The console line without terminal escapes and carriage returns."""
    return _ANSI.sub("", raw).replace("\r", "").strip()


@dataclass
class ConsoleScan:
    """What one boot's console output says so far; fed bytes as they arrive."""

    version: str = ""
    finished_at: datetime | None = None
    datasource: str = ""
    failures: list[str] = field(default_factory=list)
    fatal: str = ""
    host_keys: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    interfaces: dict[str, str] = field(default_factory=dict)  # address -> device
    scanned: int = 0  # characters examined so far: linear in the input, whatever its shape
    _block: list[str] | None = None
    _in_net_table: bool = False
    _partial: str = ""  # at most MAX_LINE characters
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))

    @property
    def finished(self) -> bool:
        return bool(self.version)

    def feed(self, data: bytes, *, final: bool = False) -> None:
        """Add console bytes; complete lines are interpreted, a trailing partial one is kept.

        Each character is looked at a bounded number of times: the kept partial line never
        grows past ``MAX_LINE`` (the excess is dropped), so it is never re-split.
        """
        text = self._decoder.decode(data, final=final)
        self.scanned += len(text)
        start = 0
        while (end := text.find("\n", start)) >= 0:
            self._end_line(text, start, end)
            start = end + 1
        self._keep(text, start, len(text))
        if final and self._partial:
            self._end_line(text, len(text), len(text))

    def _keep(self, text: str, start: int, end: int) -> None:
        room = MAX_LINE - len(self._partial)
        if room > 0 and start < end:
            piece = text[start:min(end, start + room)]
            self.scanned += len(piece)
            self._partial += piece

    def _end_line(self, text: str, start: int, end: int) -> None:
        self._keep(text, start, end)
        line, self._partial = self._partial, ""
        self.feed_line(clean_line(line))

    def feed_line(self, line: str) -> None:
        if not line:
            return
        self._host_keys(line)
        self._network(line)
        for pattern in _FAILURES:
            if pattern.search(line):
                if len(self.failures) < MAX_FAILURES:
                    self.failures.append(line[-500:])
                break
        if _FATAL.search(line):
            self.fatal = line[-500:]
        match = _FINISHED.search(line)
        if match:
            self.version = match["version"]
            self.datasource = match["ds"]
            try:
                self.finished_at = parsedate_to_datetime(match["at"])
            except (TypeError, ValueError):
                self.finished_at = None

    def _host_keys(self, line: str) -> None:
        if _FP_BEGIN in line:
            self._block = []
        elif _FP_END in line and self._block is not None:
            self.host_keys = self._block
            self._block = None
        elif self._block is not None:
            # A longer line is no fingerprint, and would cost the regex quadratic time.
            match = _FP_LINE.search(line) if len(line) <= MAX_HOST_KEY_LEN else None
            if match and len(self._block) < MAX_HOST_KEYS:
                bits, digest, comment, kind = match.groups()
                key = f"{bits} {digest} {comment.strip()} ({kind})"
                if len(key) <= MAX_HOST_KEY_LEN:
                    self._block.append(key)

    def _network(self, line: str) -> None:
        if _NET_TABLE.search(line):
            self._in_net_table = True
            self.addresses = []
            return
        if not self._in_net_table or "ci-info:" not in line:
            return
        match = _NET_ROW.search(line)
        if match is None:
            if "Route" in line or "+++" in line:
                self._in_net_table = False
            return
        if match["scope"] == "global" and match["dev"] != "lo":
            address = match["addr"].split("/", 1)[0]
            if (len(self.addresses) < MAX_ADDRESSES and len(address) <= MAX_ADDRESS_LEN
                    and address not in self.addresses):
                self.addresses.append(address)
                self.interfaces[address] = match["dev"][:MAX_ADDRESS_LEN]

    def problem(self) -> str:
        """Why this boot is not a success, or "" if it is."""
        if self.fatal:
            return self.fatal
        if self.finished and self.datasource.startswith("DataSourceNone"):
            return ("cloud-init found no seed (datasource None): the guest did not get its "
                    "configuration")
        return "; ".join(self.failures)

    def guest(self, *, ready_at: datetime | None, started_at: datetime,
              error: str = "") -> GuestInfo:
        boot = None if ready_at is None else round((ready_at - started_at).total_seconds(), 2)
        return GuestInfo(ready_at=ready_at, boot_seconds=boot,
                         ssh_host_keys=tuple(self.host_keys), addresses=tuple(self.addresses),
                         ip_addresses=self.address_details(), cloud_init_error=error)

    def address_details(self) -> tuple[GuestAddress, ...]:
        """The ``ci-info`` addresses with their device, as the serial log's."""
        return tuple(GuestAddress(address=a, interface=self.interfaces.get(a, ""),
                                  source="serial") for a in self.addresses)


def _read_tail(path: Path, end: int, length: int) -> bytes:
    start = max(0, end - length)
    with path.open("rb") as f:
        f.seek(start)
        return f.read(end - start)


def boot_start_offset(serial_log: Path, started_at: datetime) -> int:
    """Where the boot that began at ``started_at`` starts in the (appended) log.

    If the log has not been written since ``started_at``, nothing of this boot is in it yet:
    the end. Otherwise the line of the last boot banner (SeaBIOS or the kernel's "Linux
    version"), unless that boot already ended (``reboot: Power down`` ...): then just after its
    end; and past a "finished" line the guest stamped before ``started_at`` (an earlier boot
    ended by a forced stop, the new one not printing yet). Exact: the node passes the log's
    size taken just before starting the domain as ``start_offset`` instead.
    """
    try:
        stat = serial_log.stat()
    except FileNotFoundError:
        return 0
    if stat.st_mtime < started_at.timestamp():
        return stat.st_size
    window = min(stat.st_size, HOST_KEY_LOOKBACK)
    base = stat.st_size - window
    data = _read_tail(serial_log, stat.st_size, window)
    banners = [m.start() for p in (_KERNEL_BANNER, _FIRMWARE_BANNER) for m in p.finditer(data)]
    if not banners:
        return base + _after_stale_finish(data, 0, started_at)
    start = _line_start(data, max(banners))
    ended = list(_BOOT_END.finditer(data, start))
    if ended:
        start = ended[-1].end()
    return base + _after_stale_finish(data, start, started_at)


def _after_stale_finish(data: bytes, start: int, started_at: datetime) -> int:
    """Skip a "finished" line stamped (by the guest's clock) well before ``started_at``.

    It belongs to an earlier boot whose end was not logged (a forced stop) while the new boot
    has not printed its banner yet.
    """
    finished = list(_FINISHED_BYTES.finditer(data, start))
    if not finished:
        return start
    try:
        stamp = parsedate_to_datetime(finished[-1]["at"].decode(errors="replace"))
    except (TypeError, ValueError):
        return start
    if stamp.tzinfo is None or stamp >= started_at - STALE_FINISH_S:
        return start
    end = data.find(b"\n", finished[-1].end())
    return len(data) if end < 0 else end + 1


def _line_start(data: bytes, index: int) -> int:
    return data.rfind(b"\n", 0, index) + 1


def earlier_host_keys(serial_log: Path, end: int) -> list[str]:
    """The last complete host-key block printed before ``end`` (an earlier boot's)."""
    if end <= 0:
        return []
    data = _read_tail(serial_log, end, HOST_KEY_LOOKBACK)
    begin = data.rfind(_FP_BEGIN.encode())
    if begin < 0:
        return []
    scan = ConsoleScan()
    scan.feed(data[_line_start(data, begin):], final=True)
    return scan.host_keys


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            if size < offset:  # truncated or replaced: start over
                offset = 0
            f.seek(offset)
            data = f.read(READ_CHUNK)
    except FileNotFoundError:
        return b"", offset
    return data, offset + len(data)


async def wait_for_guest_ready(serial_log: Path, *, started_at: datetime, timeout_s: float,
                               start_offset: int | None = None, poll_s: float = POLL_S,
                               settle_s: float = SETTLE_S,
                               on_network: Callable[[ConsoleScan], Awaitable[None]] | None = None,
                               ) -> GuestInfo:
    """Follow ``serial_log`` until cloud-init finished in the boot begun at ``started_at``.

    Returns the guest's host keys, addresses and boot time; raises GuestNotReady when cloud-init
    reports a failure, GuestReadyTimeout after ``timeout_s``. ``on_network`` is awaited once,
    when the log first shows an address (the ``network`` phase).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    offset = (start_offset if start_offset is not None
              else await asyncio.to_thread(boot_start_offset, serial_log, started_at))
    boot_offset = offset
    scan = ConsoleScan()
    catching_up = True  # reading what was written before we looked
    ready_at: datetime | None = None
    settle_until = 0.0
    while True:
        data, offset = await asyncio.to_thread(_read_from, serial_log, offset)
        scan.feed(data)
        if on_network is not None and scan.addresses:
            await on_network(scan)
            on_network = None
        if scan.fatal:
            raise _failed(scan, started_at)
        if scan.finished and ready_at is None:
            # Seen live: our clock. Already in the log when we looked: the guest's own stamp.
            now = datetime.now(UTC)
            ready_at = (scan.finished_at or now) if catching_up else now
            settle_until = loop.time() + settle_s
        if ready_at is not None and loop.time() >= settle_until:
            break
        if loop.time() >= deadline:
            scan.feed(b"", final=True)
            raise GuestReadyTimeout(
                f"cloud-init did not finish within {timeout_s:g} s",
                guest=scan.guest(ready_at=None, started_at=started_at,
                                 error=scan.problem() or "cloud-init did not finish"),
                timeout_s=timeout_s)
        catching_up = len(data) == READ_CHUNK
        await asyncio.sleep(poll_s)
    scan.feed(b"", final=True)
    if scan.problem():
        raise _failed(scan, started_at)
    if not scan.host_keys:
        scan.host_keys = await asyncio.to_thread(earlier_host_keys, serial_log, boot_offset)
    guest = scan.guest(ready_at=ready_at, started_at=started_at)
    log.info("guest ready", boot_seconds=guest.boot_seconds, cloud_init=scan.version,
             host_keys=len(guest.ssh_host_keys), addresses=list(guest.addresses))
    return guest


def _failed(scan: ConsoleScan, started_at: datetime) -> GuestNotReady:
    problem = scan.problem()
    return GuestNotReady(
        f"cloud-init failed in the guest: {problem}",
        guest=scan.guest(ready_at=None, started_at=started_at, error=problem),
        failures=scan.failures[-10:],
    )
