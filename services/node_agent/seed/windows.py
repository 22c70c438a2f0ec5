"""The answer file a Windows VM's seed media carries (docs/windows.md), from its record.

The install flow (the VM boots an ISO) gets ``Autounattend.xml``, a disk image (sysprepped)
``unattend.xml``. The sealed password is opened here, with the node key, and written only into
the answer file, in unattend.xml's own encoding.
"""

from __future__ import annotations

from limiquantix.common.vms import VmRecord
from limiquantix.common.windows import open_password
from limiquantix.node_agent.seed.unattend import (
    DRIVER_LETTERS,
    UnattendSpec,
    answer_files,
    encode_password,
)


def windows_answer_files(record: VmRecord, node_key: bytes, *, from_iso: bool,
                         with_drivers: bool) -> dict[str, bytes]:
    """File name -> content for the seed; empty unless the VM is Windows with a ``windows``."""
    win = record.windows
    if record.os_type != "windows" or win is None:
        return {}
    join = win.domain_join
    password = (open_password(node_key, record.id, win.admin_password_sealed)
                if win.admin_password_sealed else "")
    spec = UnattendSpec(
        flow="install" if from_iso else "sysprep", computer_name=win.computer_name,
        admin_user=win.admin_user,
        admin_password_encoded=encode_password(password, "AdministratorPassword")
        if password else "",
        user_password_encoded=encode_password(password, "Password") if password else "",
        timezone=win.timezone, locale=win.locale, keyboard=win.keyboard,
        product_key=win.product_key, enable_rdp=win.enable_rdp, enable_winrm=win.enable_winrm,
        first_logon_commands=win.first_logon_commands,
        drivers_dirs=DRIVER_LETTERS if with_drivers and from_iso else (),
        windows_version=win.windows_version,
        join_domain=join.domain if join else "", join_ou=join.ou if join else "",
        join_user=join.user if join else "",
        join_password=open_password(node_key, record.id, join.password_sealed) if join else "",
    )
    return answer_files(spec)
