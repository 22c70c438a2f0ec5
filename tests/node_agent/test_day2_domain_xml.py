"""Domain XML of the day-2 devices (hot-plug ceilings, extra disks, media drive), against golden
files, and accepted by libvirt (test driver define round trip).

Regenerate after an intended change: ``pytest tests/node_agent --update-golden``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from limiquantix.node_agent.domain_xml import (
    DomainSpec,
    ExtraDiskSpec,
    device_xml,
    media_cdrom,
    render,
)
from tests.support.golden import assert_golden

GOLDEN = Path(__file__).parent / "golden"
VM_ID = "0b5e7a52-3f1d-4c8e-9a6b-2d4f6e8a0c13"
VM_DIR = f"/var/lib/limiquantix/images/{VM_ID}"


def spec(**fields: object) -> DomainSpec:
    base: dict[str, object] = {
        "name": "lq-grow-1", "uuid": VM_ID, "virt_type": "qemu", "vcpus": 2, "memory_mib": 1024,
        "disk": f"{VM_DIR}/disk.qcow2", "seed_iso": f"{VM_DIR}/seed.iso",
        "serial_log": f"{VM_DIR}/serial.log",
    }
    base.update(fields)
    return DomainSpec(**base)  # type: ignore[arg-type]


DATA = ExtraDiskSpec(path=f"{VM_DIR}/disk-5c1d.qcow2", target="sdf", unit=1)
LOGS = ExtraDiskSpec(path=f"{VM_DIR}/disk-9e2a.qcow2", target="sdg", unit=2)
CASES = {
    "day2-hotplug": spec(max_vcpus=4, max_memory_mib=4096),
    "day2-hotplug-kvm": spec(virt_type="kvm", max_vcpus=8, max_memory_mib=8192),
    "day2-devices": spec(extra_disks=(DATA, LOGS), media_iso="/srv/cache/tools.iso"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_day2_domain_xml_matches_golden_file(case: str, update_golden: bool) -> None:
    assert_golden(GOLDEN / f"{case}.xml", render(CASES[case]), update_golden)


def test_without_headroom_the_domain_has_no_ceilings() -> None:
    root = ET.fromstring(render(spec(max_vcpus=2, max_memory_mib=1024)))
    assert root.find("maxMemory") is None and root.find("cpu") is None
    assert root.find("vcpu").attrib == {}  # type: ignore[union-attr]


def test_memory_headroom_puts_every_vcpu_in_one_numa_cell() -> None:
    root = ET.fromstring(render(CASES["day2-hotplug"]))
    cell = root.find("./cpu/numa/cell")
    assert cell is not None and cell.get("cpus") == "0-3" and cell.get("memory") == "1024"
    assert root.find("maxMemory").text == "4096"  # type: ignore[union-attr]


def test_every_domain_has_an_empty_media_drive_apart_from_the_seed() -> None:
    root = ET.fromstring(render(spec()))
    drives = {d.find("target").get("dev"): d.find("source")  # type: ignore[union-attr]
              for d in root.findall("./devices/disk[@device='cdrom']")}
    assert set(drives) == {"sda", "sde"} and drives["sde"] is None
    assert "<source" not in device_xml(media_cdrom(None))


def test_the_day2_domains_are_accepted_by_libvirt() -> None:
    conn = libvirt.open("test:///default")
    try:
        for case in CASES.values():
            xml = render(case).replace("type=\"qemu\"", "type=\"test\"", 1).replace(
                "type=\"kvm\"", "type=\"test\"", 1)
            dom = conn.defineXML(xml)
            try:
                defined = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
                units = [a.get("unit") for a in defined.findall(
                    "./devices/disk[@device='disk']/address[@type='drive']")]
                assert units == [str(d.unit) for d in case.extra_disks]
            finally:
                dom.undefine()
    finally:
        conn.close()
