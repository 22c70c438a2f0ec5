"""One way to touch NATS (STYLE.md 13): no service module publishes, asks or calls a KV method on
a raw NATS connection, JetStream context or KV bucket; they call the helpers in ``libs/common``
(``publish``, ``rpc``, ``kv_records``, ``kv_view``, ``vm_store``, ``nats_client``).

An AST scan of ``services/``, simple on purpose. A receiver is *raw* when it is named like a
NATS handle (``nc``, ``js``, ``kv``, ``bucket``, or ending ``_nc``/``_js``/``_kv``/``_bucket``),
or is a name/attribute the module annotates with a nats-py type (``Client``,
``JetStreamContext``, ``KeyValue``) or assigns from one (``nc.jetstream()``,
``js.key_value(...)``, ``nats_client.bucket(...)``, ``app[app_keys.NATS]`` ...). What it
cannot see: a raw handle passed under another name through an untyped path. Consumers
(``subscribe``, ``pull_subscribe``, ``fetch``, acks) are not in scope: each is its service's
own plumbing.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "services"

# publish / request, and every KeyValue method (opening a bucket included).
NATS_METHODS = frozenset({
    "publish", "request", "key_value", "create_key_value", "delete_key_value",
    "get", "put", "create", "update", "delete", "purge", "purge_deletes", "keys", "history",
    "watch", "watchall", "status",
})
RAW_TYPES = frozenset({"Client", "JetStreamContext", "KeyValue"})
RAW_NAMES = frozenset({"nc", "js", "kv", "bucket", "nats"})
RAW_SUFFIXES = ("_nc", "_js", "_kv", "_bucket")
# Calls that return a raw handle.
RAW_FACTORIES = frozenset({"jetstream", "key_value", "create_key_value", "bucket"})
RAW_APP_KEYS = frozenset({"NATS", "JETSTREAM"})


def _name(node: ast.expr) -> str | None:
    """``x`` for ``x``, ``self._kv`` -> ``_kv``, ``app[app_keys.TOKENS_KV]`` -> ``TOKENS_KV``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _name(node.slice)
    if isinstance(node, ast.Call):
        return _name(node.func)
    return None


def _annotated_raw(annotation: ast.expr | None) -> bool:
    if annotation is None:
        return False
    return any(isinstance(n, ast.Name | ast.Attribute) and _name(n) in RAW_TYPES
               for n in ast.walk(annotation))


def _makes_raw(value: ast.expr, raw: set[str]) -> bool:
    if isinstance(value, ast.Await):
        value = value.value
    if isinstance(value, ast.Call):
        return _name(value.func) in RAW_FACTORIES
    return _is_raw(value, raw)


def _is_raw(receiver: ast.expr, raw: set[str]) -> bool:
    name = _name(receiver)
    if name is None:
        return False
    if isinstance(receiver, ast.Subscript):  # app[app_keys.X]
        return name in RAW_APP_KEYS or name.endswith("_KV")
    if isinstance(receiver, ast.Call):  # nc.jetstream().publish(...)
        return name in RAW_FACTORIES
    return name in RAW_NAMES or name.endswith(RAW_SUFFIXES) or name in raw


def _raw_names(tree: ast.Module) -> set[str]:
    """Names and attributes the module annotates with, or assigns from, a raw handle."""
    raw: set[str] = set()
    for _ in range(3):  # assignments chain (kv = ...; self._store = kv)
        for node in ast.walk(tree):
            if isinstance(node, ast.arg) and _annotated_raw(node.annotation):
                raw.add(node.arg)
            elif isinstance(node, ast.AnnAssign) and (
                    _annotated_raw(node.annotation)
                    or (node.value is not None and _makes_raw(node.value, raw))):
                raw.add(_name(node.target) or "")
            elif isinstance(node, ast.Assign) and _makes_raw(node.value, raw):
                raw.update(_name(t) or "" for t in node.targets)
    raw.discard("")
    return raw


def raw_nats_calls(path: Path) -> list[str]:
    """``file:line: receiver.method(...)`` for every raw NATS call in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    raw = _raw_names(tree)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in NATS_METHODS and _is_raw(node.func.value, raw)):
            where = path.relative_to(ROOT)
            found.append(f"{where}:{node.lineno}: {ast.unparse(node.func)}(...)")
    return found


# Modules still to move onto the helpers, each with its reason (the test below fails once one
# is clean, so the list cannot outlive its entries).
NOT_YET: dict[str, str] = {}


def test_no_service_module_calls_nats_on_a_raw_handle() -> None:
    found = [call for path in sorted(SERVICES.rglob("*.py")) for call in raw_nats_calls(path)
             if str(path.relative_to(ROOT)) not in NOT_YET]
    assert found == [], "use the libs/common helpers instead:\n" + "\n".join(found)


def test_every_module_not_yet_moved_still_needs_to_be() -> None:
    for module in NOT_YET:
        path = ROOT / module
        assert not path.exists() or raw_nats_calls(path), f"{module} is clean: drop it from NOT_YET"


def test_the_scan_finds_raw_calls(tmp_path: Path) -> None:
    """The scan itself: each way a raw handle reaches a call is caught, helpers are not."""
    module = tmp_path / "m.py"
    module.write_text(
        "async def f(nc, conn: Client, app, store):\n"
        "    await nc.publish('s', b'')\n"
        "    await conn.request('s', b'')\n"
        "    deliveries = await nats_client.bucket(nc.jetstream(), 'b')\n"
        "    await deliveries.put('k', b'')\n"
        "    await app[app_keys.TOKENS_KV].get('k')\n"
        "    await nc.jetstream().publish('s', b'')\n"
        "    await store.get('k')\n"  # a helper (KvRecords, VmStore): fine
        "    await publish_event(js, event)\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        lines = [call.split(": ", 1)[1] for call in raw_nats_calls(module)]
    finally:
        ROOT = saved
    assert lines == ["nc.publish(...)", "conn.request(...)", "deliveries.put(...)",
                     "app[app_keys.TOKENS_KV].get(...)", "nc.jetstream().publish(...)"]
