"""Every console script answers --help and --version, refuses unknown arguments before it
starts anything, and lq-local refuses to run twice on one data dir or on taken ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from limiquantix.common.nats_server import free_port
from limiquantix.common.runner import package_version
from limiquantix.local.instance_lock import instance_lock

BIN = Path(sys.executable).parent
SERVICES = ("lq-local", "lq-api", "lq-node-agent", "lq-image-library")


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True,
                          timeout=30, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("script", SERVICES)
def test_help_and_version_answer_without_starting_anything(script: str) -> None:
    helped = run(script, "--help")
    assert helped.returncode == 0 and f"usage: {script}" in helped.stdout
    assert "LQ_" in helped.stdout  # says how it is configured
    versioned = run(script, "--version")
    assert versioned.returncode == 0 and versioned.stdout.strip() == f"{script} {package_version()}"


@pytest.mark.parametrize("script", SERVICES)
def test_an_unknown_argument_is_refused_with_exit_2(script: str) -> None:
    refused = run(script, "--data-dir", "/x")
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQ_")}
    return {**env, "LQ_DATA_DIR": str(data), **extra}


def test_lq_local_refuses_a_data_dir_another_instance_holds(tmp_path: Path) -> None:
    with instance_lock(tmp_path):
        second = run("lq-local", env=_env(tmp_path))
    assert second.returncode == 1
    assert f"another lq-local (pid {os.getpid()}) is running on {tmp_path}" in second.stderr


def test_lq_local_refuses_a_port_in_use_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = run("lq-local", env=_env(tmp_path, LQ_API_PORT=str(port)))
    assert refused.returncode == 1
    assert f"port {port} (LQ_API_PORT)" in refused.stderr


@pytest.mark.stack
def test_lq_local_runs_the_system_with_the_users_settings_and_stops_on_ctrl_c(
        tmp_path: Path) -> None:
    """The README's first command, minus the installs: lq-local with a setting of the user's
    (passed through to the node agent), a node online with the capacity it implies, Ctrl-C."""
    ports = {name: free_port() for name in ("LQ_API_PORT", "LQ_IMAGE_LIBRARY_PORT")}
    env = _env(tmp_path / "data", LQ_LIBVIRT_URI="test:///default", LQ_NODE_VCPUS="2",
               LQ_CPU_ALLOCATION_RATIO="3", LQ_NATS_URL=f"nats://127.0.0.1:{free_port()}",
               LQ_HEARTBEAT_INTERVAL_S="1",
               **{name: str(port) for name, port in ports.items()})
    process = subprocess.Popen([str(BIN / "lq-local")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        token_file = tmp_path / "data" / "api-token"
        url = f"http://127.0.0.1:{ports['LQ_API_PORT']}/v1/nodes"
        node = _poll_node(url, token_file, deadline=time.monotonic() + 60)
        assert (node["vcpus"], node["cpu_allocation_ratio"], node["vcpus_capacity"]) == (2, 3.0, 6)
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    assert "Limiquantix is running." in out and "Stopping" in out


def _poll_node(url: str, token_file: Path, deadline: float) -> dict[str, object]:
    while time.monotonic() < deadline:
        if token_file.exists():
            request = urllib.request.Request(
                url, headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    items = json.load(response)["items"]
                if items and items[0]["status"] == "online":
                    return dict(items[0])
            except OSError:
                pass
        time.sleep(0.2)
    raise AssertionError("lq-local's node did not come online within 60 s")
