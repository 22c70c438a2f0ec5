"""Create a VM and wait until it runs, with the typed client.

    LQ_URL=http://127.0.0.1:8080 LQ_API_TOKEN=... python examples/create_and_wait.py NAME IMAGE
"""

from __future__ import annotations

import os
import sys

from limiquantix.client import Client, ClientError
from limiquantix.common.vms import CreateVmRequest, VmState


def main(name: str, image: str) -> int:
    client = Client(os.environ.get("LQ_URL", "http://127.0.0.1:8080"),
                    token=os.environ["LQ_API_TOKEN"])
    try:
        vm = client.vms.create(CreateVmRequest(name=name, image=image, memory_mib=256))
        print(f"created {vm.id} ({vm.state})")
        running = client.vms.wait_for(vm.id, [VmState.RUNNING, VmState.READY], timeout_s=120)
        assert running is not None
        print(f"{running.name} is {running.state} on {running.node}")
    except ClientError as exc:  # one class per problem family; code and hint from the API
        print(f"error: {exc.message} ({exc.code}) {exc.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
