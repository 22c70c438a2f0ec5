"""The whole system on qemu:///system (TCG) with the real Debian guest image, for the guest
tests: its origin, the import, SSH with host keys checked against the API's, readiness, logs.

A VM's only NIC is QEMU user networking with ``restrict=on`` and one forward, 127.0.0.1:PORT ->
guest:22 (``network: isolated``).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from limiquantix.local.stack import Stack
from tests.support.flows import create_vm, get_vm, unique_name, wait_gone

WORK_ROOT = Path("/var/tmp/limiquantix-guest-tests")
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
               "-o", "StrictHostKeyChecking=yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def work_dir() -> Path:
    """A directory QEMU (user libvirt-qemu) can read: not under pytest's 0700 tmp dirs."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    WORK_ROOT.chmod(0o755)
    path = Path(tempfile.mkdtemp(dir=WORK_ROOT))
    path.chmod(0o755)
    return path


def keygen(directory: Path, name: str = "id_ed25519") -> Path:
    """A new ed25519 key pair without passphrase; returns the private key's path."""
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"test@{name}",
                    "-f", str(key)], check=True)
    return key


async def run(args: Sequence[str], *, timeout_s: float = 60,
              input_bytes: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(input_bytes), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def scan_host_keys(port: int, *, types: Sequence[str] = ("ed25519", "ecdsa", "rsa"),
                         timeout_s: float = 180) -> tuple[str, list[str]]:
    """(known_hosts lines, fingerprints as ``BITS SHA256:... (TYPE)``) of 127.0.0.1:port.

    One key type per ssh-keyscan call, retried: under load a scan of all types at once can
    time out on one of them and still exit 0 with the others.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    known = ""
    for key_type in types:
        while True:
            code, found, _ = await run(["ssh-keyscan", "-T", "15", "-t", key_type, "-p",
                                        str(port), "127.0.0.1"], timeout_s=60)
            if code == 0 and found.strip():
                known += found
                break
            if loop.time() > deadline:
                raise TimeoutError(f"no {key_type} host key from 127.0.0.1:{port}")
            await asyncio.sleep(2)
    _, listing, _ = await run(["ssh-keygen", "-l", "-f", "-"], input_bytes=known.encode())
    prints = []
    for line in listing.splitlines():
        fields = line.split()
        prints.append(f"{fields[0]} {fields[1]} {fields[-1]}")
    return known, prints


def fingerprint_of(line: str) -> str:
    """``BITS SHA256:... (TYPE)`` from readiness's ``BITS SHA256:... root@host (TYPE)``."""
    fields = line.split()
    return f"{fields[0]} {fields[1]} {fields[-1]}"


@dataclass
class Ssh:
    """Runs commands as ``user`` over the forward, host key pinned by ``known_hosts``."""

    port: int
    key: Path
    known_hosts: Path
    user: str = "admin"

    async def __call__(self, command: str, *, timeout_s: float = 60) -> tuple[int, str, str]:
        return await run(["ssh", *SSH_OPTIONS, "-o", f"UserKnownHostsFile={self.known_hosts}",
                          "-i", str(self.key), "-p", str(self.port),
                          f"{self.user}@127.0.0.1", command], timeout_s=timeout_s)


# The whole system as the real-guest tests and bench/boot.py run it (TCG on qemu:///system).
GUEST_STACK_ENV = {
    "LQ_HEARTBEAT_INTERVAL_S": "1",
    "LQ_RECONCILE_INTERVAL_S": "5",
    "LQ_STOP_TIMEOUT_S": "300",  # the ACPI shutdown must not be cut short by a forced stop
    "LQ_VIRT_TYPE": "qemu",
    "LQ_LOG_LEVEL": "debug",
    "LQ_IMPORT_ALLOWED_NETWORKS": "127.0.0.0/8",  # the guest image comes from a local origin
}


@asynccontextmanager
async def serve_file(path: Path) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 serving one file (the 'origin' the library imports from)."""
    async def get(_: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get(f"/{path.name}", get)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/{path.name}"
    finally:
        await runner.cleanup()


async def import_image(api: aiohttp.ClientSession, url: str, timeout_s: float = 600) -> str:
    body = {"name": f"debian12-test-{uuid.uuid4().hex[:6]}", "source_url": url,
            "format": "qcow2", "os": "debian", "version": "12", "default_user": "admin"}
    async with api.post("/v1/images", json=body) as response:
        record = await response.json()
        assert response.status == 202, record
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with api.get(f"/v1/images/{record['id']}") as response:
            record = await response.json()
        if record["state"] == "active":
            return str(record["id"])
        assert record["state"] != "error", record
        await asyncio.sleep(0.5)
    raise AssertionError(f"image not active after {timeout_s} s: {record}")


READY_TIMEOUT_S = 900  # TCG on a shared 2-core machine: 45 s when idle, minutes when busy


async def wait_ready(api: aiohttp.ClientSession, vm_id: str) -> dict[str, Any]:
    """Until ``ready``; fails at once when the node reports a cloud-init error."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, record = await get_vm(api, vm_id)
        assert status == 200, record
        if record["state"] == "ready":
            return record
        assert record["state"] != "error", record.get("error")
        assert not record.get("guest", {}).get("cloud_init_error"), record["guest"]
        await asyncio.sleep(1)
    raise AssertionError(f"VM not ready after {READY_TIMEOUT_S} s: {record}")


async def console_log(api: aiohttp.ClientSession, vm_id: str) -> str:
    async with api.get(f"/v1/vms/{vm_id}/console-log",
                       params={"max_bytes": str(4 << 20)}) as response:
        assert response.status == 200, await response.text()
        return await response.text()


def keep_evidence(stack: Stack, name: str, *, why: str = "failed") -> None:
    """Copy the logs (services, serial consoles) out of the temp dir before it goes, to
    ``/var/tmp/limiquantix-guest-tests/<why>-<name>``."""
    dest = Path("/var/tmp/limiquantix-guest-tests") / f"{why}-{name}"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(stack.root / "logs", dest / "logs", dirs_exist_ok=True)
    for serial in stack.node_data_dir("node-a").rglob("serial.log"):
        shutil.copy(serial, dest / f"serial-{serial.parent.name}.log")
    print(f"logs of the {why} run kept in {dest}")


async def remove_vm(api: aiohttp.ClientSession, vm_id: str) -> None:
    """Delete the VM (the node destroys its domain) and wait until it is gone."""
    async with api.delete(f"/v1/vms/{vm_id}") as response:
        assert response.status in (202, 404), await response.text()
    await wait_gone(api, vm_id, timeout_s=120)


async def ssh_to(record: dict[str, Any], key: Path, directory: Path) -> Ssh:
    """SSH to a VM's forward of port 22, its host keys scanned, checked against the ones the
    API reported from the guest's first boot, and pinned."""
    (forward,) = [f for f in record["forwards"] if f["guest_port"] == 22]
    known, scanned = await scan_host_keys(forward["host_port"])
    assert sorted(scanned) == sorted(fingerprint_of(k) for k in record["guest"]["ssh_host_keys"])
    known_hosts = directory / f"known_hosts-{record['id']}"
    known_hosts.write_text(known)
    return Ssh(forward["host_port"], key, known_hosts)


@dataclass
class GuestStack:
    """The whole system on qemu:///system with the guest image imported, an admin key pair,
    and the VMs a module created on it (removed when the stack goes)."""

    stack: Stack
    api: aiohttp.ClientSession
    image_id: str
    key: Path
    dir: Path
    vms: list[str] = field(default_factory=list)

    @property
    def public_key(self) -> str:
        return self.key.with_suffix(".pub").read_text().strip()

    def cloud_init(self, **extra: Any) -> dict[str, Any]:
        """The user ``admin`` with this stack's key, plus ``extra``."""
        return {"user": "admin", "ssh_authorized_keys": [self.public_key], **extra}

    async def create_vm(self, name: str | None = None, **body: Any) -> dict[str, Any]:
        """POST /v1/vms: the guest image, 1 vCPU, 1 GiB, 4 GiB disk, isolated network, the
        admin's key, unless ``body`` says otherwise; removed with the stack."""
        vm = await create_vm(self.api, **{
            "name": name or unique_name("guest"), "image": self.image_id, "memory_mib": 1024,
            "disk_gib": 4, "cloud_init": self.cloud_init(), "network": {"mode": "isolated"},
            **body})
        self.vms.append(vm["id"])
        return vm

    async def remove_vm(self, vm_id: str) -> None:
        """Delete one of this stack's VMs now and wait until it is gone."""
        await remove_vm(self.api, vm_id)
        self.vms.remove(vm_id)

    async def ssh_to(self, record: dict[str, Any]) -> Ssh:
        return await ssh_to(record, self.key, self.dir)


@asynccontextmanager
async def running_guest_stack(image: Path, name: str, *, extra_env: Mapping[str, str] = {},
                      failed: Callable[[], bool] = lambda: False) -> AsyncIterator[GuestStack]:
    """The whole system (``GUEST_STACK_ENV`` + ``extra_env``) with ``image`` imported through
    the library from a local origin. On the way out every VM left is removed (its domain
    must not outlive the test); when the body raised or ``failed()`` says a test failed,
    the logs are kept first (``keep_evidence`` under ``name``)."""
    directory = work_dir()
    try:
        key = keygen(directory, "admin")
        async with serve_file(image) as url, \
                Stack(directory / "s", libvirt_uri="qemu:///system",
                      extra_env={**GUEST_STACK_ENV, **extra_env}) as stack, \
                aiohttp.ClientSession(base_url=stack.api_url, headers=stack.headers()) as api:
            running = GuestStack(stack, api, await import_image(api, url), key, directory)
            try:
                yield running
            except BaseException:
                keep_evidence(stack, name)
                raise
            else:
                if failed():
                    keep_evidence(stack, name)
            finally:
                for vm_id in reversed(running.vms):
                    await remove_vm(api, vm_id)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
