"""Property-based requests from the OpenAPI document against a live stack: no 5xx.

Schemathesis generates bodies, paths, queries and headers from ``GET /v1/openapi.json`` (valid
and invalid ones); each request goes to the real API of a real stack (nats-server, image
library, a node agent on libvirt's test driver, lq-api) with the master token. Small and
bounded for CI: ``FUZZ_EXAMPLES`` per operation, no shrinking, a fixed seed (the same inputs
each run; raise ``LQ_FUZZ_EXAMPLES`` locally to explore more).
"""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp
import pytest
import requests

from limiquantix.local.stack import Stack

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

pytestmark = [pytest.mark.fuzz, pytest.mark.stack, pytest.mark.timeout(300)]

FUZZ_EXAMPLES = int(os.environ.get("LQ_FUZZ_EXAMPLES", "8"))
BUDGET_S = 120.0
# Operations excluded on purpose, each with the issue that owns its 5xx (never silently):
KNOWN_FAILING: dict[tuple[str, str], str] = {}
# A WebSocket is no request/response operation (its ticket checks are tests/console's).
NOT_FUZZED = {("GET", "/v1/console/ws")}
# Streams do not end: only their status line is read.
STREAMS = {("GET", "/v1/events")}


def _fuzz_operation(operation: object, key: tuple[str, str], base_url: str,
                    headers: dict[str, str], failures: list[str]) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())  # type: ignore[attr-defined]
    def run(case: object) -> None:
        stream = key in STREAMS
        if stream:  # only the status line: schemathesis would read a live stream forever
            kwargs = case.as_transport_kwargs(base_url=base_url,  # type: ignore[attr-defined]
                                              headers=headers)
            with requests.request(**kwargs, stream=True, timeout=15) as response:
                status = response.status_code
        else:
            response = case.call(base_url=base_url, headers=headers,  # type: ignore[attr-defined]
                                 timeout=15)
            status = response.status_code
        if status >= 500:
            body = "" if stream else response.text[:300]
            failures.append(f"{key[0]} {key[1]} -> {status}: "
                            f"{case.as_curl_command()}\n  {body}")  # type: ignore[attr-defined]

    run()


def fuzz(base_url: str, headers: dict[str, str], document: dict[str, object]
         ) -> tuple[list[str], int]:
    """Run every operation's examples; returns the 5xx found and the number of requests
    (at most: an operation may have fewer distinct examples)."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    requests = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in NOT_FUZZED or key in KNOWN_FAILING:
            continue
        if time.monotonic() - started > BUDGET_S:
            failures.append(f"budget of {BUDGET_S:g} s spent before {key}")
            break

        _fuzz_operation(operation, key, base_url, headers, failures)
        requests += FUZZ_EXAMPLES
    return failures, requests


async def test_no_operation_answers_5xx_to_generated_requests(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http, http.get(
        f"{stack.api_url}/v1/openapi.json",
    ) as response:
        document = await response.json()
    started = time.monotonic()
    failures, requests = await asyncio.to_thread(fuzz, stack.api_url, stack.headers(), document)
    print(f"fuzzed {requests} requests in {time.monotonic() - started:.1f} s")
    assert requests > 0
    assert not failures, "\n".join(failures)
