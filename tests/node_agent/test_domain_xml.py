"""Domain XML is a pure function of DomainSpec, checked against golden files.

Regenerate after an intended change: ``pytest tests/node_agent --update-golden``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from limiquantix.common.vms import PortForward
from limiquantix.node_agent.domain_xml import (
    QEMU_NS,
    DomainSpec,
    NicSpec,
    mac_for,
    render,
)

GOLDEN = Path(__file__).parent / "golden"
VM_ID = "6f1c1e36-9b0e-4a57-9d7e-1d4f3c7a9b01"
VM_DIR = f"/var/lib/limiquantix/images/{VM_ID}"
SSH = PortForward(guest_port=22, host_port=2201, name="ssh")
WEB = PortForward(guest_port=80, host_port=8080, name="web")


NO_NIC = NicSpec()


def spec(nic: NicSpec = NO_NIC, *, virt_type: str = "qemu",
         install_iso: str | None = None) -> DomainSpec:
    return DomainSpec(
        name="lq-web-1", uuid=VM_ID, virt_type=virt_type,  # type: ignore[arg-type]
        vcpus=2, memory_mib=2048, disk=f"{VM_DIR}/disk.qcow2", seed_iso=f"{VM_DIR}/seed.iso",
        install_iso=install_iso, serial_log=f"{VM_DIR}/serial.log", console_host="127.0.0.1",
        nic=nic,
    )


CASES: dict[str, DomainSpec] = {
    "none": spec(),
    "user": spec(NicSpec(mode="user", mac=mac_for(VM_ID), forwards=(SSH, WEB))),
    "isolated": spec(NicSpec(mode="isolated", mac=mac_for(VM_ID), forwards=(SSH,))),
    "bridge": spec(NicSpec(mode="bridge", source="br0", mac=mac_for(VM_ID))),
    "network": spec(NicSpec(mode="network", source="lab", mac=mac_for(VM_ID))),
    "iso": spec(install_iso="/srv/isos/debian-12-netinst.iso"),
    "kvm": spec(virt_type="kvm"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_domain_xml_matches_golden_file(case: str, update_golden: bool) -> None:
    xml = render(CASES[case])
    golden = GOLDEN / f"{case}.xml"
    if update_golden:
        golden.write_text(xml)
    assert xml == golden.read_text()


def test_render_is_deterministic() -> None:
    assert render(CASES["user"]) == render(CASES["user"])


def test_isolated_network_is_restricted_and_forwards_bind_loopback_only() -> None:
    root = ET.fromstring(render(CASES["isolated"]))
    args = [a.get("value") for a in root.iter(f"{{{QEMU_NS}}}arg")]
    netdev = args[args.index("-netdev") + 1]
    assert "restrict=on" in netdev.split(",")
    assert "hostfwd=tcp:127.0.0.1:2201-:22" in netdev.split(",")
    assert "bus=pcie.0,addr=0x0a" in args[args.index("-device") + 1]
    assert root.find("./devices/interface") is None


def _netdev(nic: NicSpec) -> list[str]:
    root = ET.fromstring(render(spec(nic)))
    args = [a.get("value") or "" for a in root.iter(f"{{{QEMU_NS}}}arg")]
    return args[args.index("-netdev") + 1].split(",")


def test_user_network_is_restricted_by_default() -> None:
    """Unrestricted slirp makes 10.0.2.2 the host's loopback (NATS, the API, the library)."""
    assert "restrict=on" in _netdev(CASES["user"].nic)


def test_only_user_mode_drops_the_restriction_and_only_when_opted_in() -> None:
    user = NicSpec(mode="user", mac=mac_for(VM_ID), forwards=(SSH,), outbound=True)
    isolated = NicSpec(mode="isolated", mac=mac_for(VM_ID), forwards=(SSH,), outbound=True)
    assert "restrict=on" not in _netdev(user)
    assert "hostfwd=tcp:127.0.0.1:2201-:22" in _netdev(user)
    assert "restrict=on" in _netdev(isolated)


def test_no_network_means_no_nic_at_all() -> None:
    root = ET.fromstring(render(CASES["none"]))
    assert root.find("./devices/interface") is None
    assert not list(root.iter(f"{{{QEMU_NS}}}arg"))


def test_iso_install_boots_the_cdrom_first_then_the_disk() -> None:
    root = ET.fromstring(render(CASES["iso"]))
    order = {d.find("source").get("file"): d.find("boot").get("order")  # type: ignore[union-attr]
             for d in root.iter("disk") if d.find("boot") is not None}
    assert order == {"/srv/isos/debian-12-netinst.iso": "1", f"{VM_DIR}/disk.qcow2": "2"}


def test_mac_is_stable_and_in_the_qemu_range() -> None:
    assert mac_for(VM_ID) == mac_for(VM_ID)
    assert mac_for(VM_ID).startswith("52:54:00:")
    assert mac_for(VM_ID) != mac_for("another")


def test_test_driver_round_trip_define_start_destroy_undefine() -> None:
    """libvirt accepts what we render (the test driver parses the full domain schema)."""
    conn = libvirt.open("test:///default")
    xml = render(spec(NicSpec(mode="isolated", mac=mac_for(VM_ID), forwards=(SSH,)),
                      virt_type="test"))
    dom = conn.defineXML(xml)
    try:
        dom.create()
        assert dom.isActive() and dom.UUIDString() == VM_ID
        described = ET.fromstring(dom.XMLDesc(0))
        assert described.find("./devices/serial/log").get("file") == f"{VM_DIR}/serial.log"  # type: ignore[union-attr]
        dom.destroy()
    finally:
        dom.undefine()
    conn.close()
