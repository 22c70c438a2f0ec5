"""A node's allocation record: the capacity reserved on it, one share per VM.

The gateway keeps one record per node in the ``lq_allocations`` bucket and changes it only with
compare-and-set on the revision, so two gateways placing at once can never both take the last
room on a node (issue 16). Shares are per VM, so a reservation or a release can be repeated
without counting twice, and the records can be rebuilt from the VM records at any time.
"""

from __future__ import annotations

import msgspec

from limiquantix.common.model import Model


class VmShare(Model, frozen=True, kw_only=True):
    """What one VM holds on its node."""

    vcpus: int
    memory_mib: int
    at: float = 0.0  # epoch seconds of the last change: young shares are never reconciled away


class NodeAllocation(Model, frozen=True, kw_only=True):
    """Every share reserved on one node (about 90 bytes a VM: ~10,000 VMs per node fit in
    NATS's 1 MiB payload)."""

    vms: dict[str, VmShare] = {}

    @property
    def vcpus(self) -> int:
        return sum(share.vcpus for share in self.vms.values())

    @property
    def memory_mib(self) -> int:
        return sum(share.memory_mib for share in self.vms.values())


allocation_encoder = msgspec.json.Encoder()
allocation_decoder = msgspec.json.Decoder(NodeAllocation)
