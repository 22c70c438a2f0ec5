"""Console audit events name the API token that opened the session (issue 10 row 15).

The console gateway on aiohttp's test server, a real nats-server, a real TCP echo server as the
VM's display (the audit trail does not depend on RFB; RFB against QEMU is tests/console).
"""

from __future__ import annotations

import aiohttp

from limiquantix.common.events import ConsoleSessionEnded, ConsoleSessionStarted
from tests.console.conftest import gateway, http, make_gateway
from tests.support.console import Gateway, console_events, wait_for
from tests.support.tcp_servers import tcp_server

__all__ = ["gateway", "http", "make_gateway"]  # the console suite's fixtures, used here


async def test_a_console_session_is_audited_with_the_named_token(
    gateway: Gateway, http: aiohttp.ClientSession,
) -> None:
    async with http.post(f"{gateway.url}v1/tokens", json={"name": "alice-ops",
                                                          "role": "operator"},
                         headers=gateway.auth) as response:
        token = (await response.json())["token"]
    async with tcp_server("echo") as echo:
        vm = await gateway.add_vm(("127.0.0.1", echo.port))
        async with http.post(f"{gateway.url}v1/vms/{vm.id}/console",
                             headers={"Authorization": f"Bearer {token}"}) as response:
            ticket = await response.json()
            assert response.status == 201, ticket
        ws = await http.ws_connect(gateway.ws_url(ticket))
        await ws.send_bytes(b"hello")
        assert (await ws.receive(timeout=5)).data == b"hello"
        await ws.close()
    await wait_for(lambda: gateway.open_sessions == 0)
    events = await console_events(gateway, vm.id)
    assert [type(e) for e in events] == [ConsoleSessionStarted, ConsoleSessionEnded]
    assert all(e.user == "alice-ops" for e in events)  # type: ignore[union-attr]
