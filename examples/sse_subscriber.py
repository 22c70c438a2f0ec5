"""Print the API's events as they happen (Server-Sent Events), resuming after a drop.

    LQ_URL=... LQ_API_TOKEN=... python examples/sse_subscriber.py [COUNT] [LAST_EVENT_ID]

Each line: the event id (pass it back to resume), its type and what it is about.
"""

from __future__ import annotations

import os
import sys

from limiquantix.client import Client
from limiquantix.common.events import VmStateChanged


def main(count: int, after: str) -> int:
    client = Client(os.environ.get("LQ_URL", "http://127.0.0.1:8080"),
                    token=os.environ["LQ_API_TOKEN"])
    with client.events.stream(last_event_id=after) as stream:
        print("subscribed", flush=True)
        for seen, message in enumerate(stream, start=1):
            match message.decoded():  # the shared Event union, or None for a newer kind
                case VmStateChanged() as event:
                    print(f"{message.id} {message.event} {event.vm_id} {event.state}", flush=True)
                case None:
                    print(f"{message.id} {message.event} (unknown kind)", flush=True)
                case event:
                    print(f"{message.id} {message.event}", flush=True)
            if seen == count:
                return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0,
                  sys.argv[2] if len(sys.argv) > 2 else ""))
