"""``lq token create|list|delete``: named API tokens with a role (admin only)."""

from __future__ import annotations

from limiquantix.cli.client import seg
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK
from limiquantix.cli.output import print_json_if_asked, table
from limiquantix.common.api_tokens import TokenCreated, TokenInfo


def create(ctx: Context) -> int:
    """Print the new token once (stdout, alone, so it can be captured); the rest to stderr."""
    created = ctx.client.post("/v1/tokens", TokenCreated,
                              json_body={"name": ctx.args.name, "role": ctx.args.role})
    if print_json_if_asked(ctx, created):
        return EXIT_OK
    ctx.print(created.token)
    ctx.warn(f"token {created.name!r} ({created.role}, id {created.id}) created; it is shown "
             "only now: keep it, e.g. LQ_API_TOKEN=... lq vm list")
    return EXIT_OK


def list_tokens(ctx: Context) -> int:
    tokens = ctx.client.get_list("/v1/tokens", TokenInfo)
    if print_json_if_asked(ctx, tokens):
        return EXIT_OK
    rows = [[t.id, t.name, t.role, t.created_at.strftime("%Y-%m-%d %H:%M"), t.created_by or "-"]
            for t in tokens]
    ctx.print(table(["ID", "NAME", "ROLE", "CREATED", "BY"], rows))
    return EXIT_OK


def delete(ctx: Context) -> int:
    """Delete by id or name (a name is looked up in the list)."""
    tokens = ctx.client.get_list("/v1/tokens", TokenInfo)
    for ref in ctx.args.tokens:
        token_id = next((t.id for t in tokens if ref in (t.id, t.name)), ref)
        ctx.client.request("DELETE", f"/v1/tokens/{seg(token_id)}")
        ctx.print(f"{ref}: deleted")
    return EXIT_OK
