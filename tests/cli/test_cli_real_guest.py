"""``lq`` end to end with a real Debian guest under QEMU (TCG): import, create --wait ready,
``lq vm ssh`` with the host key checked against the API's fingerprints, log, stop, delete.

Loopback only: the guest's NIC is QEMU user networking with restrict=on (``--network
isolated``); its SSH forward listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from limiquantix.local.stack import Stack
from tests.support.cli import LQ, Lq, SlowFiles, base_env
from tests.support.flows import unique_name
from tests.support.waits import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.guest, pytest.mark.stack, pytest.mark.timeout(2400)]

ENV = {
    "LQ_HEARTBEAT_INTERVAL_S": "1",
    "LQ_RECONCILE_INTERVAL_S": "5",
    "LQ_STOP_TIMEOUT_S": "300",
    "LQ_VIRT_TYPE": "qemu",
    "LQ_IMPORT_ALLOWED_NETWORKS": "127.0.0.0/8",  # the image is served from this machine
}
REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def debian_image() -> Path:
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("the guest image needs root and debootstrap")
    from tests.support.guest_image import ensure_image

    return ensure_image()


@pytest.fixture
def qemu_dir() -> Iterator[Path]:
    """A directory QEMU (user libvirt-qemu) can read; pytest's tmp dirs are 0700."""
    subprocess.run(["bash", str(REPO / "scripts/libvirtd.sh")], check=True, capture_output=True)
    path = Path(tempfile.mkdtemp(prefix="lq-cli-guest-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def origin(debian_image: Path) -> Iterator[str]:
    """The image on a local HTTP server (full speed), as a mirror would serve it."""
    handler = type("Files", (SlowFiles,), {"root": debian_image.parent, "rate": 1e12})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{debian_image.name}"
    server.shutdown()
    server.server_close()


async def test_lq_creates_a_real_guest_and_sshes_in_with_a_verified_host_key(
        qemu_dir: Path, origin: str, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    name = unique_name("guest")
    async with Stack(qemu_dir / "s", libvirt_uri="qemu:///system", extra_env=ENV) as stack:
        env = base_env(tmp_path)
        env.update(LQ_URL=stack.api_url, LQ_API_TOKEN=stack.api_token)
        lq = Lq(env)
        try:
            imported = await lq("image", "import", origin, "--name", "debian12", timeout_s=600)
            assert imported.code == 0, imported.err
            image_id = re.search(r"^Importing (\S+) ", imported.out, re.M).group(1)  # type: ignore[union-attr]

            created = await lq("vm", "create", name, "--image", image_id, "--memory", "1G",
                               "--disk", "4G", "--network", "isolated", "--ssh-key",
                               f"{key}.pub", "--wait", "ready", "--timeout", "15m",
                               timeout_s=960)
            assert created.code == 0, created.err + (await lq("vm", "log", name)).out
            states = re.findall(rf"^{name}: (\w+)$", created.err, re.M)
            assert states[-1] == "ready" and "running" in states, created.err
            fingerprints = re.findall(r"^host key:\s+\d+ (SHA256:\S+)", created.out, re.M)
            assert fingerprints, created.out

            ssh = await lq("vm", "ssh", name, "-i", str(key), "--", "id", "-un", "&&",
                           "sudo", "-n", "true", "&&", "hostname", timeout_s=120)
            assert ssh.code == 0, ssh.err
            assert ssh.out.split() == ["admin", name]
            assert "unknown" not in ssh.err  # the verified path, not trust on first use

            log = await lq("vm", "log", name)
            assert "BEGIN SSH HOST KEY FINGERPRINTS" in log.out
            assert all(fp in log.out for fp in fingerprints)

            # Follow the serial log while the guest powers down: the follower prints the
            # shutdown messages as they are appended, ending exactly where the log ends.
            follower = await asyncio.create_subprocess_exec(
                LQ, "vm", "log", name, "--follow", env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
            stopped = await lq("vm", "stop", name, "--wait", "--timeout", "6m", timeout_s=400)
            assert stopped.code == 0 and stopped.out.strip() == f"{name}: stopped", stopped.err
            final = (await lq("vm", "log", name)).out  # the guest is off: the log is final
            assert follower.stdout is not None
            output = bytearray()

            async def caught_up() -> bool:
                with contextlib.suppress(TimeoutError):
                    output.extend(await asyncio.wait_for(follower.stdout.read(1 << 16), 0.5))
                return output.decode(errors="replace").endswith(final[-4000:])

            await eventually(caught_up, timeout_s=30.0, what="the follower at the log's end")
            follower.terminate()
            _, follow_err = await follower.communicate()
            assert "Power down" in output.decode(errors="replace"), follow_err
            print(created.out)  # shown with -rA: how long create took
        finally:
            deleted = await lq("vm", "delete", name, "--wait", "--timeout", "3m", timeout_s=200)
        assert deleted.code == 0 and deleted.out.strip() == f"{name}: deleted", deleted.err
