"""Everything a VM's seed media carries, for its create and for every later rebuild.

The cloud-init files (NoCloud or config drive, by the record's datasource) and, for a Windows
VM with a ``windows`` section, its answer file. One function, so a rebuild after a cloud-init
update carries the same files as the first build (it once dropped the answer file).
"""

from __future__ import annotations

from limiquantix.common.vms import VmRecord
from limiquantix.node_agent.seed import config_drive
from limiquantix.node_agent.seed.windows import windows_answer_files


def seed_content(record: VmRecord, node_key: bytes, *, from_iso: bool, with_drivers: bool
                 ) -> tuple[dict[str, bytes], str]:
    """(file name -> bytes, volume label) of ``record``'s seed media.

    ``from_iso``: the VM installs from an ISO (Windows gets Autounattend.xml, else unattend.xml);
    ``with_drivers``: a virtio-win ISO is attached (the answer file loads its drivers).
    """
    content, label = config_drive.seed_media(record)
    content |= windows_answer_files(record, node_key, from_iso=from_iso, with_drivers=with_drivers)
    return content, label
