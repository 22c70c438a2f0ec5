"""One ``lq-local`` per data directory and port set: a second one refuses to start, saying why.

Two stacks on one data dir would share NATS's store and the VM files, and their services would
fight for the ports; the second used to start anyway and fail later with "image-library exited".
The lock is an ``flock`` on ``<data_dir>/lq-local.lock`` (released by the kernel when the process
dies, so a crash never leaves a stale lock); the file holds the owner's PID for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path


class AlreadyRunning(RuntimeError):
    """Another lq-local holds the data dir, or a port the stack needs is taken."""


@contextlib.contextmanager
def instance_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data dir's lock for the ``with`` block, or raise AlreadyRunning."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "lq-local.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise AlreadyRunning(
                f"another lq-local (pid {owner}) is running on {data_dir}; stop it first "
                f"(Ctrl-C in its terminal, or `kill {owner}`), or set LQ_DATA_DIR to another "
                "directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def check_ports_free(ports: dict[str, int], host: str = "127.0.0.1") -> None:
    """Raise AlreadyRunning naming the first of ``ports`` (setting -> port) already taken."""
    for setting, port in ports.items():
        with socket.socket() as probe:
            # As servers do: a port left in TIME_WAIT by the last run is free; a listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise AlreadyRunning(
                    f"port {port} ({setting}) on {host} is in use by another program; stop it "
                    f"or set {setting} to a free port") from None
