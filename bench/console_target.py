"""The TCP server both console proxies forward to in bench/console.py (a separate process).

The first byte a connection sends chooses what it does, so one server serves every measurement:
``E`` echo; ``S`` + 8-byte N: read N bytes, then answer ``K``; ``F`` + 8-byte N: write N bytes.
"""

from __future__ import annotations

import asyncio
import struct
import sys

CHUNK = bytes(range(256)) * 1024  # 256 KiB


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        mode = await reader.readexactly(1)
        if mode == b"E":
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        elif mode == b"S":
            (remaining,) = struct.unpack(">Q", await reader.readexactly(8))
            while remaining > 0:
                data = await reader.read(min(remaining, 1 << 20))
                if not data:
                    return
                remaining -= len(data)
            writer.write(b"K")
            await writer.drain()
            await reader.read()
        elif mode == b"F":
            (remaining,) = struct.unpack(">Q", await reader.readexactly(8))
            view = memoryview(CHUNK)
            while remaining > 0:
                part = view[: min(remaining, len(CHUNK))]
                writer.write(part)
                await writer.drain()
                remaining -= len(part)
            await reader.read()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
