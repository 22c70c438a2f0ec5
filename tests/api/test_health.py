"""Health, readiness and the token: the public routes answer without one."""

from __future__ import annotations

from tests.support.api_gateway import Gateway


async def test_healthz_and_readyz_answer_without_a_token(gw: Gateway) -> None:
    async with gw.client.get("/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"
    async with gw.client.get("/readyz") as response:
        assert response.status == 200
        body = await response.json()
        assert body == {"status": "ready", "nats": "connected", "jetstream": "ok"}
