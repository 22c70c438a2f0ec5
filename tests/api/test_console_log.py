"""GET /v1/vms/{vm}/console-log asks the VM's node over NATS request/reply.

No node agent runs in these tests: a responder on the node's RPC subject (on the real NATS
server) answers as the node agent does, per libs/common/node_rpc.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.msg import Msg

from limiquantix.common import node_rpc, rpc, subjects
from limiquantix.common.errors import LimiquantixError
from tests.support.api_gateway import Gateway


async def respond_as_node(gw: Gateway, cb: Callable[[Msg], Awaitable[None]]) -> None:
    """Subscribe ``cb`` on node-a's console_log subject, as node-a, and wait until NATS routes
    to it.

    (A fresh connection's SUB is not always visible to other connections right after its
    flush(); a probe request through the server is.)
    """
    subject = subjects.node_rpc("node-a", node_rpc.CONSOLE_LOG)
    await (await gw.as_node("node-a")).subscribe(subject, cb=cb)
    probe = node_rpc.encoder.encode(node_rpc.ConsoleLogRequest(vm_id="probe"))
    for _ in range(100):
        try:
            await gw.nc.request(subject, probe, timeout=0.5)
            return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            continue
    raise AssertionError("the responder never became reachable")


async def make_vm(gw: Gateway) -> str:
    await gw.heartbeat("node-a")
    async with gw.client.post("/v1/vms", headers=gw.auth,
                              json={"name": "logged", "image": "/i.qcow2"}) as response:
        return str((await response.json())["id"])


async def test_console_log_is_the_nodes_answer_as_text(gw: Gateway) -> None:
    vm_id = await make_vm(gw)
    asked: list[node_rpc.ConsoleLogRequest] = []

    async def answer(msg: Msg) -> None:
        request = node_rpc.console_log_request_decoder.decode(msg.data)
        if request.vm_id != "probe":
            asked.append(request)
        log = "Booting...\nlogin: "[-request.max_bytes:]
        await msg.respond(node_rpc.encoder.encode(
            node_rpc.ConsoleLogReply(data=log, truncated=request.max_bytes < 18, size=18)))

    await respond_as_node(gw, answer)
    async with gw.client.get(f"/v1/vms/{vm_id}/console-log?max_bytes=7",
                             headers=gw.auth) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/plain"
        assert await response.text() == "login: "
        assert response.headers["X-Log-Truncated"] == "true"
    assert asked == [node_rpc.ConsoleLogRequest(vm_id=vm_id, max_bytes=7)]


async def test_node_errors_and_silence_are_problems(gw: Gateway) -> None:
    vm_id = await make_vm(gw)
    async with gw.client.get(f"/v1/vms/{vm_id}/console-log", headers=gw.auth) as response:
        assert response.status == 503
        assert (await response.json())["code"] == "node_unavailable"

    class NoLog(LimiquantixError):
        code = "console_log_missing"
        status = 404

    async def refuse(msg: Msg) -> None:
        await rpc.respond_error(msg, NoLog("no log yet", hint="start it"))

    await respond_as_node(gw, refuse)
    async with gw.client.get(f"/v1/vms/{vm_id}/console-log", headers=gw.auth) as response:
        problem = await response.json()
        assert response.status == 404 and problem["code"] == "console_log_missing"
        assert problem["hint"] == "start it"
    async with gw.client.get(f"/v1/vms/{vm_id}/console-log?max_bytes=0",
                             headers=gw.auth) as response:
        assert response.status == 422
