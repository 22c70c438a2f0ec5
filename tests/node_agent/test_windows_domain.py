"""Windows-shaped domains: golden XML per shape, and one that defines and starts on the real
qemu:///system (UEFI from OVMF, a swtpm TPM 2.0, Hyper-V enlightenments) and reaches its
firmware with a blank disk: QEMU runs it, its VNC display answers, swtpm serves its TPM."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from limiquantix.common.vms import PortForward
from limiquantix.node_agent.domain_xml import (
    HYPERV_FEATURES,
    HYPERV_FEATURES_TCG,
    QEMU_NS,
    DomainSpec,
    NicSpec,
    mac_for,
    render,
)
from tests.support.golden import assert_golden

GOLDEN = Path(__file__).parent / "golden"
VM_ID = "2b8e5d1a-7c3f-4e9a-b6d2-0a1f3c5e7b90"
VM_DIR = f"/var/lib/limiquantix/images/{VM_ID}"
URI = "qemu:///system"


def win_spec(*, drivers_iso: str | None = None, secure_boot: bool = False,
             virt_type: str = "qemu", install_iso: str | None = "/srv/isos/win11.iso",
             disk: str = f"{VM_DIR}/disk.qcow2", serial_log: str = f"{VM_DIR}/serial.log",
             seed_iso: str | None = f"{VM_DIR}/seed.iso", name: str = "lq-win-1",
             vm_id: str = VM_ID) -> DomainSpec:
    model = "virtio" if drivers_iso else "e1000e"
    return DomainSpec(
        name=name, uuid=vm_id, virt_type=virt_type,  # type: ignore[arg-type]
        vcpus=2, memory_mib=4096, disk=disk, seed_iso=seed_iso, install_iso=install_iso,
        serial_log=serial_log, os_type="windows", secure_boot=secure_boot,
        drivers_iso=drivers_iso,
        nic=NicSpec(mode="isolated", mac=mac_for(vm_id), model=model,
                    forwards=(PortForward(guest_port=3389, host_port=23389, name="rdp"),)),
    )


CASES = {
    "windows-sata": win_spec(),
    "windows-virtio": win_spec(drivers_iso="/srv/isos/virtio-win-0.1.262.iso"),
    "windows-secureboot-kvm": win_spec(secure_boot=True, virt_type="kvm"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_windows_domain_xml_matches_golden_file(case: str, update_golden: bool) -> None:
    assert_golden(GOLDEN / f"{case}.xml", render(CASES[case]), update_golden)


def test_windows_without_virtio_drivers_gets_sata_and_e1000e() -> None:
    root = ET.fromstring(render(CASES["windows-sata"]))
    (disk,) = root.findall("./devices/disk[@device='disk']/target")
    assert disk.attrib == {"dev": "sdd", "bus": "sata"}
    args = [a.get("value") or "" for a in root.iter(f"{{{QEMU_NS}}}arg")]
    assert args[args.index("-device") + 1].startswith("e1000e,netdev=net0,")
    assert [t.get("dev") for t in root.findall("./devices/disk[@device='cdrom']/target")] == [
        "sda", "sdb", "sde"]  # seed, install ISO, the (empty) media drive


def test_windows_with_virtio_win_gets_virtio_and_the_drivers_cdrom() -> None:
    root = ET.fromstring(render(CASES["windows-virtio"]))
    (disk,) = root.findall("./devices/disk[@device='disk']/target")
    assert disk.attrib == {"dev": "vda", "bus": "virtio"}
    cdroms = {d.find("target").get("dev"): d.find("source").get("file")  # type: ignore[union-attr]
              for d in root.findall("./devices/disk[@device='cdrom']")
              if d.find("source") is not None}  # the media drive is empty
    assert cdroms["sdc"] == "/srv/isos/virtio-win-0.1.262.iso"
    args = [a.get("value") or "" for a in root.iter(f"{{{QEMU_NS}}}arg")]
    assert args[args.index("-device") + 1].startswith("virtio-net-pci,netdev=net0,")


def test_windows_shape_has_uefi_tpm_hyperv_localtime_and_tablet() -> None:
    root = ET.fromstring(render(CASES["windows-sata"]))
    assert root.find("./os").get("firmware") == "efi"  # type: ignore[union-attr]
    assert root.find("./os/type").get("machine") == "q35"  # type: ignore[union-attr]
    hyperv = [e.tag for e in root.find("./features/hyperv")]  # type: ignore[union-attr]
    assert hyperv == list(HYPERV_FEATURES_TCG)
    assert root.find("./clock").get("offset") == "localtime"  # type: ignore[union-attr]
    assert root.find("./devices/tpm/backend").attrib == {"type": "emulator", "version": "2.0"}  # type: ignore[union-attr]
    assert root.find("./devices/input[@type='tablet']").get("bus") == "usb"  # type: ignore[union-attr]
    assert root.find("./features/smm") is None
    secure = ET.fromstring(render(CASES["windows-secureboot-kvm"]))
    assert secure.find("./features/smm").get("state") == "on"  # type: ignore[union-attr]
    assert secure.find("./clock/timer[@name='hypervclock']") is not None
    kvm_hyperv = [e.tag for e in secure.find("./features/hyperv")]  # type: ignore[union-attr]
    assert kvm_hyperv == list(HYPERV_FEATURES)


# --- on the real qemu:///system --------------------------------------------------------------

def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True,
                          timeout=300)


async def _rfb_banner(port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        return await asyncio.wait_for(reader.readexactly(12), 10)
    finally:
        writer.close()


def _vnc_port(name: str) -> int:
    out = virsh("vncdisplay", name).stdout.strip()  # "127.0.0.1:0"
    return 5900 + int(out.rsplit(":", 1)[1])


@pytest.mark.e2e
@pytest.mark.parametrize("secure_boot", [False, True], ids=["uefi", "secure-boot"])
async def test_windows_shaped_domain_starts_on_real_qemu_and_reaches_its_firmware(
        shared_dir: Path, secure_boot: bool) -> None:
    if subprocess.run(["bash", str(Path(__file__).parents[2] / "scripts/libvirtd.sh")],
                      capture_output=True).returncode != 0 or virsh("uri").returncode != 0:
        pytest.skip("libvirtd is not running (bash scripts/libvirtd.sh)")
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (scripts/setup.sh installs it)")
    disk = shared_dir / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64G"], check=True)
    disk.chmod(0o666)
    vm_id = str(uuid.uuid4())
    name = f"lq-wintest-{vm_id[:8]}"
    xml = render(win_spec(install_iso=None, seed_iso=None, disk=str(disk), name=name,
                          vm_id=vm_id, serial_log=str(shared_dir / "serial.log"),
                          secure_boot=secure_boot))
    (shared_dir / "domain.xml").write_text(xml)
    defined = virsh("define", str(shared_dir / "domain.xml"))
    assert defined.returncode == 0, defined.stderr
    try:
        started = virsh("start", name)
        assert started.returncode == 0, started.stderr
        live = ET.fromstring(virsh("dumpxml", name).stdout)
        # libvirt chose OVMF from the firmware descriptors and made the VM its own NVRAM.
        loader = live.find("./os/loader")
        assert loader is not None and "OVMF" in (loader.text or ""), virsh("dumpxml", name).stdout
        # Secure Boot: the firmware with Microsoft's keys enrolled, SMM on.
        assert (".ms.fd" in (loader.text or "")) == secure_boot, loader.text
        assert loader.get("secure", "no") == ("yes" if secure_boot else "no")
        assert live.find("./os/nvram") is not None
        assert live.find("./features/hyperv/relaxed").get("state") == "on"  # type: ignore[union-attr]
        assert (await asyncio.to_thread(_rfb_banner_sync, _vnc_port(name))).startswith(b"RFB ")
        # Still running a few seconds later: OVMF runs (no disk OS: it sits in its boot menu).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            state = virsh("domstate", name).stdout.strip()
            assert state == "running", (state, _qemu_log(name))
            await asyncio.sleep(0.5)
        swtpm = subprocess.run(["pgrep", "-f", f"swtpm socket.*{vm_id}"], capture_output=True,
                               text=True)
        assert swtpm.stdout.strip(), "no swtpm process serves this domain's TPM"
    finally:
        virsh("destroy", name)
        virsh("undefine", name, "--nvram", "--tpm")
    assert virsh("domstate", name).returncode != 0  # gone


def _rfb_banner_sync(port: int) -> bytes:
    return asyncio.run(_rfb_banner(port))


def _qemu_log(name: str) -> str:
    path = Path(f"/var/log/libvirt/qemu/{name}.log")
    return path.read_text()[-2000:] if path.exists() else ""
