"""The whole system on one machine: nats-server, image library, node agent(s) and the API.

Used by ``lq-local`` (the README's first command) and by the test suite, so tests exercise the
same start-up path users run. Every process is started here and stopped here, by its PID.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from limiquantix.common import nats_auth
from limiquantix.common.library_tokens import (
    NODE_KEY_FILE,
    SECRET_FILE,
    load_or_create_secret_file,
    write_node_key_file,
)
from limiquantix.common.nats_server import NatsCluster, NatsServer, free_port
from limiquantix.common.process import StartStopContext, stop_process

READY_TIMEOUT_S = 60.0


def _script(name: str) -> str:
    """A console script installed next to this interpreter (the venv's bin)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


class ServiceProcess:
    """One service subprocess with its own environment and log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, env, log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:  # noqa: ASYNC230 - opening a log file is instant
            self.process = await asyncio.create_subprocess_exec(
                *self.command, env=self.env, stdout=out, stderr=out,
                start_new_session=True,  # Ctrl-C in a terminal reaches the supervisor only
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def kill(self) -> None:
        """SIGKILL: a crash, for tests of what survives one."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)

    async def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it does not end; returns the exit code."""
        if self.process is None:
            return None
        return await stop_process(self.process, timeout_s)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Stack(StartStopContext):
    """``async with Stack(root) as stack``: everything up and ready, then everything stopped."""

    def __init__(
        self,
        root: Path,
        *,
        libvirt_uri: str = "test:///default",
        nodes: tuple[str, ...] = ("node-a",),
        extra_env: Mapping[str, str] | None = None,
        with_image_library: bool = True,
        api_port: int = 0,
        image_library_port: int = 0,
        nats_port: int = 0,
        shared_data_dir: Path | None = None,
        api_token: str | None = None,
        nats_cluster: int = 1,
    ) -> None:
        self.root = root
        self.libvirt_uri = libvirt_uri
        self.initial_nodes = nodes
        self.with_image_library = with_image_library
        self.shared_data_dir = shared_data_dir
        self.api_port = api_port or free_port()
        self.image_library_port = image_library_port or free_port()
        self.api_token = api_token if api_token is not None else secrets.token_urlsafe(24)
        # NATS as in production: one identity per service (seeds kept in <data>/nats/, 0600),
        # permissions per identity, anonymous clients refused.
        auth_dir = (shared_data_dir or root) / "nats"
        self.nats: NatsServer | NatsCluster
        if nats_cluster > 1:
            # N servers routed on loopback, one JetStream store each; every stream and bucket
            # gets min(N, 3) copies unless LQ_JETSTREAM_REPLICAS says otherwise (extra_env).
            self.nats = NatsCluster(self._data("nats") / "cluster", nats_cluster,
                                    auth_dir=auth_dir, nodes=nodes, log_dir=self.root / "logs",
                                    ports=(nats_port,))
        else:
            self.nats = NatsServer(
                self._data("nats") / "jetstream", nats_port,
                log_file=self.root / "logs" / "nats.log", auth_dir=auth_dir, nodes=nodes,
            )
        self.extra_env = dict(extra_env or {})
        self.services: dict[str, ServiceProcess] = {}

    @property
    def nats_url(self) -> str:
        return self.nats.url

    def nats_options(self, identity: str = nats_auth.API) -> dict[str, Any]:
        """``nats.connect`` keyword arguments to connect as ``identity`` (tests, benchmarks)."""
        return self.nats.connect_options(identity)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def image_library_url(self) -> str:
        return f"http://127.0.0.1:{self.image_library_port}"

    def _data(self, name: str) -> Path:
        return self.shared_data_dir if self.shared_data_dir else self.root / name

    @property
    def library_secret_file(self) -> Path:
        """The secret that signs image library requests, shared by every service here."""
        return (self.shared_data_dir or self.root) / SECRET_FILE

    @property
    def library_node_key_file(self) -> Path:
        """What node agents get instead of the secret: a key that only reads images."""
        return (self.shared_data_dir or self.root) / NODE_KEY_FILE

    def node_data_dir(self, node_id: str) -> Path:
        return self._data(f"node-{node_id}")

    def _env(self, data_dir: Path, identity: str, **extra: str) -> dict[str, str]:
        """A service's environment: its own NATS identity; the API token only for the API."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
        env.update({
            "LQ_NATS_URL": self.nats_url,
            "LQ_NATS_CREDS": str(self.nats.creds_for(identity)),
            "LQ_DATA_DIR": str(data_dir),
            "LQ_LOG_FORMAT": "json",
            "LQ_API_PORT": str(self.api_port),
            "LQ_IMAGE_LIBRARY_PORT": str(self.image_library_port),
            "LQ_IMAGE_LIBRARY_URL": self.image_library_url,
            "LQ_LIBVIRT_URI": self.libvirt_uri,
            "LQ_IMAGE_LIBRARY_SECRET_FILE": str(self.library_secret_file),
        })
        if isinstance(self.nats, NatsCluster):
            env["LQ_JETSTREAM_REPLICAS"] = str(min(len(self.nats.members), 3))
        if self.api_token and identity == nats_auth.API:
            env["LQ_API_TOKEN"] = self.api_token
        env.update(self.extra_env)
        env.update(extra)
        return env

    async def _start(self, name: str, script: str, env: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess(name, [_script(script)], env, self.root / "logs" / f"{name}.log")
        await service.start()
        self.services[name] = service
        return service

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        await self.nats.start()
        secret = await asyncio.to_thread(load_or_create_secret_file, self.library_secret_file)
        await asyncio.to_thread(write_node_key_file, self.library_node_key_file, secret)
        if self.with_image_library:
            await self._start("image-library", "lq-image-library",
                              self._env(self._data("image-library"), nats_auth.IMAGE_LIBRARY))
        await self._start("api", "lq-api", self._env(self._data("api"), nats_auth.API))
        if self.with_image_library:
            await self._wait_http(self.image_library_url + "/healthz", "image-library")
        await self._wait_http(self.api_url + "/readyz", "api")
        if not self.api_token:  # the API generated one into its data dir
            self.api_token = (self._data("api") / "api-token").read_text().strip()
        for node_id in self.initial_nodes:
            await self.start_node(node_id)

    async def start_node(self, node_id: str, **extra_env: str) -> None:
        """Start (or restart) one node agent and wait for its first heartbeat."""
        await self.nats.add_node(node_id)  # a node new to this stack gets its identity
        env = self._env(self.node_data_dir(node_id), nats_auth.node_identity(node_id),
                        LQ_NODE_ID=node_id,
                        LQ_IMAGE_LIBRARY_SECRET_FILE=str(self.library_node_key_file),
                        **extra_env)
        await self._start(f"node-{node_id}", "lq-node-agent", env)
        await self.wait_node(node_id)

    async def stop_node(self, node_id: str) -> int | None:
        return await self.services[f"node-{node_id}"].stop()

    async def kill_node(self, node_id: str) -> None:
        """SIGKILL a node agent and wait until the process is gone."""
        service = self.services[f"node-{node_id}"]
        service.kill()
        if service.process is not None:
            await service.process.wait()

    async def kill_api(self) -> None:
        """SIGKILL the API gateway (crash tests) and wait until the process is gone."""
        service = self.services["api"]
        service.kill()
        if service.process is not None:
            await service.process.wait()

    async def start_api(self) -> None:
        """(Re)start the API gateway and wait until it is ready."""
        await self._start("api", "lq-api", self._env(self._data("api"), nats_auth.API))
        await self._wait_http(self.api_url + "/readyz", "api")

    @property
    def token_file(self) -> Path:
        return self._data("api") / "api-token"

    def dead_services(self) -> list[ServiceProcess]:
        return [s for s in self.services.values() if not s.running]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}

    async def wait_node(self, node_id: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        service = self.services[f"node-{node_id}"]
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(headers=self.headers()) as http:
            while time.monotonic() < deadline:
                self._check_alive(service)
                async with http.get(f"{self.api_url}/v1/nodes/{node_id}") as response:
                    if response.status == 200:
                        body = await response.json()
                        if body.get("status", "online") == "online":
                            return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"node {node_id} did not heartbeat:\n{service.log_tail()}")

    def _check_alive(self, service: ServiceProcess) -> None:
        if not service.running:
            raise RuntimeError(f"{service.name} exited:\n{service.log_tail()}")

    async def _wait_http(self, url: str, name: str) -> None:
        service = self.services[name]
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                # All of them: the library waits for the API to lay out JetStream.
                for started in self.services.values():
                    self._check_alive(started)
                try:
                    async with http.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{name} not ready at {url}:\n{service.log_tail()}")

    async def stop(self) -> dict[str, int | None]:
        """Stop the API first (no new commands), then nodes, the library, and NATS last."""
        codes: dict[str, int | None] = {}
        order = sorted(self.services, key=lambda n: (n != "api", n.startswith("image")))
        for name in order:
            codes[name] = await self.services[name].stop()
        await self.nats.stop()
        return codes
