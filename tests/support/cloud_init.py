"""Helpers of the cloud-init tests: VM records, and cloud-init's own reading of user-data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from limiquantix.common.cloud_init import prepare
from limiquantix.common.vms import CloudInitRequest, VmRecord


def make_record(request: CloudInitRequest, *, vm_id: str = "vm-0123",
                instance_id: str = "") -> VmRecord:
    now = datetime.now(UTC)
    return VmRecord(
        id=vm_id, name="web-1", image="debian12", vcpus=1, memory_mib=512, disk_gib=4,
        cloud_init=prepare(request, vm_name="web-1"), instance_id=instance_id,
        created_at=now, updated_at=now,
    )


def merged_cloud_config(cloudinit: Any, user_data: bytes, tmp_path: Path) -> dict[str, Any]:
    """What cloud-init 22.4 makes of ``user_data``: its processor, then its cloud-config merge."""
    from cloudinit import handlers, helpers, util
    from cloudinit.handlers.cloud_config import CloudConfigPartHandler
    from cloudinit.settings import PER_INSTANCE
    from cloudinit.user_data import UserDataProcessor

    paths = helpers.Paths({"cloud_dir": str(tmp_path / "cloud"), "run_dir": str(tmp_path)})
    message = UserDataProcessor(paths).process(user_data)
    handler = CloudConfigPartHandler(paths)
    handler.handle_part(None, handlers.CONTENT_START, None, None, None, None)
    for part in message.walk():
        if part.get_content_type() != "text/cloud-config":
            continue
        headers = dict(part)
        headers["Content-Type"] = part.get_content_type()
        handler.handle_part(None, "text/cloud-config", part.get_filename() or "part",
                            util.fully_decoded_payload(part), PER_INSTANCE, headers)
    merged: dict[str, Any] = handler.cloud_buf or {}
    return merged


def shell_scripts(cloudinit: Any, user_data: bytes, tmp_path: Path) -> list[str]:
    """The scripts cloud-init would run from ``user_data``, in order."""
    from cloudinit import helpers, util
    from cloudinit.user_data import UserDataProcessor

    paths = helpers.Paths({"cloud_dir": str(tmp_path / "cloud"), "run_dir": str(tmp_path)})
    message = UserDataProcessor(paths).process(user_data)
    return [util.fully_decoded_payload(p) for p in message.walk()
            if p.get_content_type() == "text/x-shellscript"]
