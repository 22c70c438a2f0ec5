"""libvirt's event loop on asyncio, callable from any thread.

libvirtaio registers handles and timers straight on the loop, which is only safe from the loop's
own thread. But our libvirt calls run in worker threads (they block), and a remote connection
(``qemu:///system``) updates its socket's watch from whichever thread makes a call, around every
call. This implementation hands each change to the loop thread instead (in order, without
blocking the caller: libvirt may hold its own locks while it calls us).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import libvirt
import libvirtaio

_impl: ThreadSafeEventImpl | None = None


class ThreadSafeEventImpl(libvirtaio.virEventAsyncIOImpl):  # type: ignore[misc]
    """libvirtaio's implementation with every change applied on the loop thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self.loop_thread = threading.get_ident()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve another loop (tests run agents on successive loops in one process)."""
        self.loop = loop
        self.loop_thread = threading.get_ident()

    def _later(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            if threading.get_ident() == self.loop_thread:
                self.loop.call_soon(fn, *args)
            else:
                self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed: the process is exiting, nothing to watch
            pass

    def _now_or_later(self, fn: Callable[..., Any], iden: int, *args: Any) -> None:
        # On the loop thread, act at once unless the watch's registration is still queued.
        if threading.get_ident() == self.loop_thread and iden in self.callbacks:
            fn(iden, *args)
        else:
            self._later(fn, iden, *args)

    def _add_handle(self, fd: int, event: int, cb: Any, opaque: Any) -> int:
        callback = libvirtaio.FDCallback(self, cb, opaque, descriptor=None, event=event)
        self._later(self._register_handle, fd, callback)
        return int(callback.iden)

    def _register_handle(self, fd: int, callback: Any) -> None:
        callback.descriptor = self.descriptors[fd]
        self.callbacks[callback.iden] = callback
        callback.descriptor.add_handle(callback)
        self._pending_inc()

    def _update_handle(self, watch: int, event: int) -> None:
        self._now_or_later(super()._update_handle, watch, event)

    def _remove_handle(self, watch: int) -> int:
        self._now_or_later(super()._remove_handle, watch)
        return 0

    def _add_timeout(self, timeout: int, cb: Any, opaque: Any) -> int:
        callback = libvirtaio.TimeoutCallback(self, cb, opaque)
        self._later(self._register_timeout, callback, timeout)
        return int(callback.iden)

    def _register_timeout(self, callback: Any, timeout: int) -> None:
        self.callbacks[callback.iden] = callback
        callback.update(timeout=timeout)
        self._pending_inc()

    def _update_timeout(self, timer: int, timeout: int) -> None:
        self._now_or_later(super()._update_timeout, timer, timeout)

    def _remove_timeout(self, timer: int) -> int:
        self._now_or_later(super()._remove_timeout, timer)
        return 0


def _ignore_error(_ctx: object, _error: object) -> None:
    pass


def register_event_loop() -> ThreadSafeEventImpl:
    """Route libvirt's events to the running loop; call before opening a connection.

    libvirt accepts one event implementation per process. A service registers once; tests that
    run several agents one after the other (each on its own loop) rebind the idle one.
    """
    global _impl
    # libvirt prints every error to stderr by default; ours are raised and logged instead.
    libvirt.registerErrorHandler(_ignore_error, None)
    loop = asyncio.get_running_loop()
    if _impl is None:
        _impl = ThreadSafeEventImpl(loop)
        _impl.register()
    elif _impl.loop is not loop:
        if not _impl.is_idle():
            raise RuntimeError("libvirt events are bound to another, still busy event loop")
        _impl.bind(loop)
    return _impl


def current() -> ThreadSafeEventImpl | None:
    return _impl
