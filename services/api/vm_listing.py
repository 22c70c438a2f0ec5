"""``GET /v1/vms`` pages: the VMs in creation order, filtered by node, state and labels.

The order (creation time, then id) is kept sorted between changes of the VM view (rebuilt on
the first list after a change: ~5 ms at 10,000 VMs), so a page is a bisect and a short walk,
not a sort of every record per request. Filters apply to the state as answered (``unknown``
while the VM's node is offline), so ``state=running`` never lists a VM nobody can vouch for.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence

from limiquantix.api.kv_view import VmView
from limiquantix.api.paging import SortKey, decode_cursor, limit_of, page
from limiquantix.common.errors import InvalidRequest
from limiquantix.common.vms import VmRecord, VmState

Presenter = Callable[[VmRecord], VmRecord]


def sort_key(vm: VmRecord) -> SortKey:
    return (vm.created_at.isoformat(), vm.id)


class VmOrder:
    """The VM view's ids in list order, re-sorted lazily after a change."""

    def __init__(self, view: VmView) -> None:
        self._view = view
        self._keys: list[SortKey] = []
        self._dirty = True
        view.listeners.append(self._changed)

    def _changed(self, old: VmRecord | None, new: VmRecord | None) -> None:
        if old is None or new is None or old.created_at != new.created_at:
            self._dirty = True  # a VM came or went (a state change keeps the order)

    def after(self, cursor: SortKey | None) -> Iterator[tuple[SortKey, VmRecord]]:
        """(key, record) in order, starting after ``cursor``."""
        if self._dirty:
            self._keys = sorted(sort_key(vm) for vm in self._view.values())
            self._dirty = False
        keys = self._keys
        start = 0 if cursor is None else bisect.bisect_right(keys, cursor)
        for index in range(start, len(keys)):
            vm = self._view.get(keys[index][1])
            if vm is not None:  # removed since the last sort
                yield keys[index], vm


def label_filters(values: Sequence[str]) -> list[tuple[str, str | None]]:
    """``label=key`` (the VM has the label) or ``label=key=value``; all must match."""
    filters = []
    for raw in values:
        key, sep, value = raw.partition("=")
        if not key:
            raise InvalidRequest(f"label filter {raw!r} has no key",
                                 hint="Use label=KEY or label=KEY=VALUE (repeat to AND them).")
        filters.append((key, value if sep else None))
    return filters


def list_page(order: VmOrder, query: Mapping[str, str], labels: Sequence[str],
              present: Presenter) -> tuple[list[VmRecord], str | None]:
    """The page ``query`` asks for (``limit``, ``cursor``, ``node``, ``state``, labels), each
    record as answered, and the next page's cursor."""
    state = query.get("state")
    node = query.get("node")
    if state is not None and state not in VmState.__members__.values():
        raise InvalidRequest(f"unknown state {state!r}", hint=f"Use one of: {', '.join(VmState)}.")
    wanted = label_filters(labels)
    limit = limit_of(query)
    cursor = decode_cursor(query.get("cursor"))

    def matching() -> Iterator[tuple[SortKey, VmRecord]]:
        for key, vm in order.after(cursor):
            if node is not None and vm.node != node:
                continue
            if wanted and not all(
                    k in vm.labels and (v is None or vm.labels[k] == v) for k, v in wanted):
                continue
            shown = present(vm)
            if state is not None and shown.state != state:
                continue
            yield key, shown

    return page(matching(), after=None, limit=limit)
