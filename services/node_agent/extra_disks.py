"""Where a VM's extra disks live (``<vm dir>/disk-<disk id>.qcow2``) and how the domain sees them.

The file is named by the disk's id, never by its user-given name: a redelivered attach finds the
file it made, and a name reused after a delete gets a new file.
"""

from __future__ import annotations

from pathlib import Path

from limiquantix.common.vms import EXTRA_DISK_TARGETS, VmDisk, VmRecord
from limiquantix.node_agent.domain_xml import ExtraDiskSpec
from limiquantix.node_agent.vm_files import VmFiles, path_inside


def disk_path(files: VmFiles, disk_id: str) -> Path:
    """The file of extra disk ``disk_id`` (kept inside the VM's directory)."""
    return path_inside(files.root, f"disk-{disk_id}.qcow2")


def scsi_unit(target: str) -> int:
    """The fixed SCSI unit of an extra disk's target (``sdf`` is unit 1; 0 stays free)."""
    return EXTRA_DISK_TARGETS.index(target) + 1


def defined_disks(files: VmFiles, record: VmRecord) -> tuple[ExtraDiskSpec, ...]:
    """The extra disks the domain's definition holds: every listed one not being detached."""
    return tuple(_spec(files, disk) for disk in record.disks if disk.state != "detaching"
                 and disk.target in EXTRA_DISK_TARGETS)


def _spec(files: VmFiles, disk: VmDisk) -> ExtraDiskSpec:
    return ExtraDiskSpec(path=str(disk_path(files, disk.id)), target=disk.target,
                         unit=scsi_unit(disk.target))
