"""What every handler of the node agent works with, built once by ``main.serve``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from limiquantix.common.settings import Settings
from limiquantix.common.vm_store import VmStore
from limiquantix.node_agent.domain_xml import VirtType
from limiquantix.node_agent.failpoints import Failpoints
from limiquantix.node_agent.guest_watch import GuestWatch
from limiquantix.node_agent.images.source import ImageSource
from limiquantix.node_agent.libvirt_host import LibvirtHost, domain_uuid
from limiquantix.node_agent.overlay import OverlayFactory
from limiquantix.node_agent.recorder import Recorder
from limiquantix.node_agent.vm_files import VmFiles
from limiquantix.node_agent.vm_locks import VmActivity


@dataclass(frozen=True, slots=True)
class AgentContext:
    settings: Settings
    node_id: str
    virt_type: VirtType
    host: LibvirtHost
    store: VmStore
    recorder: Recorder
    images: ImageSource
    activity: VmActivity
    guests: GuestWatch
    failpoints: Failpoints
    overlays: OverlayFactory

    @property
    def data_dir(self) -> Path:
        return self.settings.data_path

    def files(self, vm_id: str) -> VmFiles:
        return VmFiles.of(self.data_dir, vm_id)

    @staticmethod
    def domain_uuid(vm_id: str) -> str:
        return domain_uuid(vm_id)
