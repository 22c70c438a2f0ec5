"""More than one gateway on a test's Stack: extra ``lq-api`` processes on the same NATS.

Each extra gateway is the real ``lq-api`` console script with the API identity, the stack's token
and library secret, its own data directory and port, so the gateways share nothing but NATS —
as two pods of deploy/api.yaml do.
"""

from __future__ import annotations

from limiquantix.common import nats_auth
from limiquantix.common.nats_server import free_port
from limiquantix.local.stack import Stack


async def start_gateway(stack: Stack, name: str, **extra_env: str) -> str:
    """Start one more gateway process called ``name``; its base URL once it is ready."""
    port = free_port()
    env = stack._env(stack.root / name, nats_auth.API, LQ_API_PORT=str(port), **extra_env)
    await stack._start(name, "lq-api", env)
    url = f"http://127.0.0.1:{port}"
    await stack._wait_http(url + "/readyz", name)
    return url


async def kill_gateway(stack: Stack, name: str) -> None:
    """SIGKILL a gateway process started here (or the stack's own, ``api``)."""
    service = stack.services[name]
    service.kill()
    if service.process is not None:
        await service.process.wait()
