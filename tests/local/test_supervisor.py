"""lq-local keeps the system up: a child killed with SIGKILL is restarted (NATS first, the
others reconnect), one that keeps dying makes lq-local stop everything and say what to do.

The stack tests run ``lq-local`` itself as a subprocess on free ports and a temp data dir,
libvirt's test driver, and find each child's PID in ``<data_dir>/run/<name>.pid``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from limiquantix.common.nats_server import free_port
from limiquantix.local.supervisor import Backoff, RestartPolicy, describe_exit, readable

BIN = Path(sys.executable).parent


def test_backoff_doubles_to_its_cap_and_starts_over_after_a_healthy_run() -> None:
    policy = RestartPolicy(give_up_exits=100)
    backoff, now = Backoff(policy, now=0.0), 0.0
    delays = []
    for _ in range(9):
        now += 1.0
        delays.append(backoff.exited(now))
        backoff.restarted(now)
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.exited(now + policy.healthy_after_s) == 0.5  # it stayed up 60 s


def test_backoff_gives_up_after_five_exits_within_two_minutes_only() -> None:
    spread = Backoff(RestartPolicy(), now=0.0)
    for minute in range(10):  # one exit a minute: each restart helped for a while
        spread.exited(minute * 60.0)
        spread.restarted(minute * 60.0 + 1)
        assert not spread.gave_up
    burst = Backoff(RestartPolicy(), now=0.0)
    for second in range(4):
        burst.exited(float(second))
        assert not burst.gave_up
    burst.exited(4.0)
    assert burst.gave_up


def test_an_exit_by_signal_is_named() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exit code 1"


class LqLocal:
    """``lq-local`` as the user runs it, its output in a file (a full pipe would block it)."""

    def __init__(self, root: Path, *args: str) -> None:
        self.data = root / "data"
        self.output = root / "lq-local.out"
        self.api_port, self.library_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
        env.update({
            "LQ_DATA_DIR": str(self.data), "LQ_LIBVIRT_URI": "test:///default",
            "LQ_NATS_URL": f"nats://127.0.0.1:{free_port()}",
            "LQ_API_PORT": str(self.api_port), "LQ_IMAGE_LIBRARY_PORT": str(self.library_port),
            "LQ_HEARTBEAT_INTERVAL_S": "1", "LQ_NODE_ID": "n1",
        })
        with open(self.output, "wb") as out:
            # Its own process group, as in a terminal, so ``stop`` is a real Ctrl-C.
            self.process = subprocess.Popen([str(BIN / "lq-local"), *args], env=env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_output(self, needle: str, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.text():
            assert self.process.poll() is None, f"lq-local exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {needle!r} in:\n{self.text()}"
            time.sleep(0.1)

    def pid(self, name: str) -> int:
        return int((self.data / "run" / f"{name}.pid").read_text())

    def pids(self) -> dict[str, int]:
        return {p.stem: int(p.read_text()) for p in (self.data / "run").glob("*.pid")}

    def wait_restarted(self, name: str, old_pid: int, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pid = self.pid(name)
            if pid != old_pid and alive(pid):
                return pid
            time.sleep(0.1)
        raise AssertionError(f"{name} was not restarted:\n{self.text()}")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None
             ) -> tuple[int, Any]:
        token = (self.data / "api-token").read_text().strip()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")
        except OSError as exc:  # refused or reset while a service restarts
            return 0, str(exc)

    def poll(self, method: str, path: str, want: int, body: dict[str, Any] | None = None,
             timeout_s: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout_s
        status, answer = 0, None
        while time.monotonic() < deadline:
            status, answer = self.call(method, path, body)
            if status == want:
                return answer
            time.sleep(0.2)
        raise AssertionError(f"{method} {path}: {status} {answer}\n{self.text()}")

    def stop(self) -> int:
        """Ctrl-C: SIGINT to the terminal's process group (lq-local and nats-server)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=120)


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _running(system: LqLocal) -> Iterator[LqLocal]:
    try:
        system.wait_output("Limiquantix is running.")
        yield system
    finally:
        pids = system.pids() if (system.data / "run").exists() else {}
        system.stop()
        for name, pid in pids.items():  # nothing outlives lq-local, even after a failure
            assert not alive(pid), f"{name} (pid {pid}) outlived lq-local"


@pytest.fixture
def lq_local(tmp_path: Path) -> Iterator[LqLocal]:
    yield from _running(LqLocal(tmp_path))


@pytest.fixture
def lq_local_cluster(tmp_path: Path) -> Iterator[LqLocal]:
    """``lq-local --nats-cluster 3``."""
    yield from _running(LqLocal(tmp_path, "--nats-cluster", "3"))


@pytest.mark.stack
def test_killed_library_node_and_nats_are_restarted_and_the_system_works_again(
        lq_local: LqLocal) -> None:
    lq_local.poll("GET", "/v1/images", 200)
    library = lq_local.pid("image-library")
    os.kill(library, signal.SIGKILL)
    lq_local.wait_restarted("image-library", library)
    lq_local.wait_output("image-library killed by SIGKILL; restarting it in 0.5 s")
    lq_local.poll("GET", "/v1/images", 200)
    node = lq_local.pid("node-n1")
    os.kill(node, signal.SIGKILL)
    lq_local.wait_restarted("node-n1", node)

    others = {name: pid for name, pid in lq_local.pids().items() if name != "nats"}
    nats = lq_local.pid("nats")
    os.kill(nats, signal.SIGKILL)
    lq_local.wait_restarted("nats", nats)
    lq_local.wait_output("nats killed by SIGKILL; restarting it in 0.5 s")
    # The services rode the outage out on their own: reconnected, not restarted.
    vm = lq_local.poll("POST", "/v1/vms", 202,
                       {"name": f"after-nats-{os.getpid()}", "memory_mib": 256, "disk_gib": 1})
    deadline = time.monotonic() + 60
    while lq_local.call("GET", f"/v1/vms/{vm['id']}")[1].get("state") != "running":
        assert time.monotonic() < deadline, lq_local.call("GET", f"/v1/vms/{vm['id']}")
        time.sleep(0.2)
    assert {n: p for n, p in lq_local.pids().items() if n != "nats"} == others
    assert all(alive(pid) for pid in lq_local.pids().values())

    assert lq_local.stop() == 0, lq_local.text()
    assert "Stopping" in lq_local.text()
    assert not list((lq_local.data / "run").glob("*.pid"))


@pytest.mark.stack
def test_a_child_that_keeps_dying_makes_lq_local_stop_everything_and_say_what_to_do(
        lq_local: LqLocal) -> None:
    """The image library's port is taken by another program while it is down: every restart
    fails at once, lq-local gives up after 5 exits, nothing is left running, exit 1."""
    children = lq_local.pids()
    os.kill(children["image-library"], signal.SIGKILL)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 0.4  # the first restart comes 0.5 s after the exit
        while True:
            try:
                squatter.bind(("127.0.0.1", lq_local.library_port))
                break
            except OSError:
                assert time.monotonic() < deadline, "the killed library's port stayed bound"
                time.sleep(0.005)
        squatter.listen()
        code = lq_local.process.wait(timeout=120)
    out = lq_local.text()
    assert code == 1, out
    assert "image-library exit code 1; it exited 5 times in 120 s, so lq-local gives up" in out
    assert "What to do: read its log" in out and "address already in use" in out.lower()
    assert out.count("image-library restarted") == 4
    for name, pid in children.items():
        assert not alive(pid), f"{name} (pid {pid}) outlived lq-local"
    assert not list((lq_local.data / "run").glob("*.pid"))


def test_a_json_log_line_is_shown_with_the_cause_of_its_traceback() -> None:
    line = json.dumps({"event": "service failed", "service": "image-library", "level": "error",
                       "timestamp": "t", "exception": "Traceback ...\n  File x\n"
                       "OSError: [Errno 98] address already in use"})
    assert readable(line) == ("error: service failed -- "
                              "OSError: [Errno 98] address already in use")
    plain = "[1] 2026/11/29 19:23:39.123 [INF] Server is ready"  # nats-server's log
    assert readable(plain) == plain


@pytest.mark.stack
def test_nats_cluster_of_three_keeps_the_system_working_while_a_server_is_killed(
        lq_local_cluster: LqLocal) -> None:
    """``lq-local --nats-cluster 3``: three routed servers, every stream and bucket on all
    three; with one killed, creates still complete, and the supervisor brings it back."""
    pids = lq_local_cluster.pids()
    assert {"nats-1", "nats-2", "nats-3"} <= set(pids) and "nats" not in pids
    banner_urls = re.search(r"NATS +(\S+)", lq_local_cluster.text())
    assert banner_urls is not None and banner_urls.group(1).count("nats://127.0.0.1:") == 3
    lq_local_cluster.poll("GET", "/v1/nodes/n1", 200)
    os.kill(pids["nats-2"], signal.SIGKILL)
    vm = lq_local_cluster.poll(
        "POST", "/v1/vms", 202,
        {"name": f"cluster-{os.getpid()}", "memory_mib": 256, "disk_gib": 1})
    deadline = time.monotonic() + 60
    while lq_local_cluster.call("GET", f"/v1/vms/{vm['id']}")[1].get("state") != "running":
        assert time.monotonic() < deadline, lq_local_cluster.call("GET", f"/v1/vms/{vm['id']}")
        time.sleep(0.2)
    lq_local_cluster.wait_restarted("nats-2", pids["nats-2"])
    lq_local_cluster.wait_output("nats-2 killed by SIGKILL; restarting it in 0.5 s")
    others = {n: p for n, p in pids.items() if not n.startswith("nats")}
    assert {n: p for n, p in lq_local_cluster.pids().items() if not n.startswith("nats")} == others
    assert lq_local_cluster.stop() == 0, lq_local_cluster.text()
