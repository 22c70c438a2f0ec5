"""Finding a running domain's ``<disk>`` by its file or its device (node_agent.devices): what
the day-2 commands use to see whether a live change is already done."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from limiquantix.node_agent import devices

LIVE_XML = """\
<domain type='qemu'>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/lq/vm-1/disk.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='sde' bus='sata'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/var/lib/lq/vm-1/disk-d1.qcow2'/>
      <target dev='sdb' bus='scsi'/>
    </disk>
  </devices>
</domain>
"""


def test_disk_by_source_finds_the_disk_holding_that_file() -> None:
    root = ET.fromstring(LIVE_XML)
    found = devices.disk_by_source(root, "/var/lib/lq/vm-1/disk-d1.qcow2")
    target = None if found is None else found.find("target")
    assert target is not None and target.get("dev") == "sdb"
    assert devices.disk_by_source(root, "/var/lib/lq/vm-1/other.qcow2") is None


def test_disk_by_target_finds_an_empty_drive_too() -> None:
    """The media drive has no ``<source>`` while empty: it is still found by its device."""
    root = ET.fromstring(LIVE_XML)
    media = devices.disk_by_target(root, "sde")
    assert media is not None and media.get("device") == "cdrom"
    assert media.find("source") is None
    system = devices.disk_by_target(root, "vda")
    source = None if system is None else system.find("source")
    assert source is not None and source.get("file") == "/var/lib/lq/vm-1/disk.qcow2"
    assert devices.disk_by_target(root, "sdz") is None
