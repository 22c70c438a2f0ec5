"""Follow VM events straight from NATS, decoded with the shared schemas (no HTTP at all).

    LQ_NATS_URL=nats://127.0.0.1:4222 LQ_NATS_CREDS=/path/to/seed.nk \
        python examples/nats_subscriber.py [COUNT]

NATS refuses anonymous clients: LQ_NATS_CREDS is an nkey seed file of an identity allowed to
subscribe to the VM event subjects (see docs/client.md).
"""

from __future__ import annotations

import asyncio
import os
import sys

import msgspec
import nats

from limiquantix.common import subjects
from limiquantix.common.events import VmStateChanged, event_decoder
from limiquantix.common.nats_client import credentials


async def main(count: int) -> int:
    options = credentials(os.environ.get("LQ_NATS_CREDS", ""))
    nc = await nats.connect(os.environ.get("LQ_NATS_URL", "nats://127.0.0.1:4222"), **options)
    done = asyncio.Event()
    seen = 0

    async def on_event(msg: nats.aio.msg.Msg) -> None:
        nonlocal seen
        try:
            event = event_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # a kind newer than these schemas
        match event:
            case VmStateChanged():
                print(f"{msg.subject} {event.vm_id} {event.previous} -> {event.state}", flush=True)
            case _:
                print(f"{msg.subject} {type(event).__name__}", flush=True)
        seen += 1
        if seen == count:
            done.set()

    await nc.subscribe(subjects.vm_events(), cb=on_event)  # every VM's events
    await nc.flush()
    print("subscribed", flush=True)
    await done.wait()
    await nc.drain()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)))
