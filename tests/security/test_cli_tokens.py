"""``lq token create|list|delete`` against the gateway (test server, real nats-server)."""

from __future__ import annotations

import asyncio
import io

from limiquantix.cli.main import run
from tests.support.security import TOKEN, MakeGateway


async def lq(url: str, token: str, *argv: str) -> tuple[int, str, str]:
    """The CLI in a thread (it is blocking; the server runs in this loop)."""
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(run, [*argv, "--url", url, "--token", token], out, err)
    return code, out.getvalue(), err.getvalue()


async def test_lq_token_create_list_delete_and_the_roles_they_carry(
    make_gateway: MakeGateway,
) -> None:
    gw = await make_gateway()
    url = str(gw.make_url("/")).rstrip("/")
    code, out, err = await lq(url, TOKEN, "token", "create", "ci-viewer", "--role", "viewer")
    assert code == 0, err
    viewer = out.strip()
    assert viewer.startswith("lqt_") and "\n" not in viewer and "shown only now" in err

    code, out, _ = await lq(url, TOKEN, "token", "list")
    assert code == 0 and "ci-viewer" in out and "viewer" in out and viewer not in out

    assert (await lq(url, viewer, "vm", "list"))[0] == 0
    code, _, err = await lq(url, viewer, "token", "list")
    assert code != 0 and "forbidden" in err

    code, out, err = await lq(url, TOKEN, "token", "delete", "ci-viewer")
    assert code == 0, err
    code, _, err = await lq(url, viewer, "vm", "list")
    assert code != 0 and "unauthorized" in err
