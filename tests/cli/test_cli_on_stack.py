"""The real ``lq`` console script, as a subprocess, against the real stack (NATS, image library,
node agent on libvirt's test driver, API), with the API itself as the oracle."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from limiquantix.common.nats_server import free_port
from limiquantix.local.stack import Stack
from tests.support.cli import LQ, Lq, base_env
from tests.support.disks import make_qcow2, make_qcow2_with_data
from tests.support.flows import unique_name

pytestmark = pytest.mark.stack


def api_get(stack: Stack, path: str) -> tuple[int, Any]:
    """The API's own answer (the oracle), read without lq."""
    request = urllib.request.Request(stack.api_url + path, headers=stack.headers())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


async def wait_readyz(stack: Stack, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{stack.api_url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the API did not come back")


def ssh_public_key(tmp_path: Path) -> Path:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return Path(f"{key}.pub")


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    assert re.fullmatch(r"error: .+ \([a-z_0-9]+\)( - .+)?", lines[0]), lines[0]
    return lines[0]


async def test_vm_lifecycle_with_lq(lq: Lq, stack: Stack, tmp_path: Path) -> None:
    """create --wait running → list → show → stop/start/pause/resume --wait → events → ssh
    command → console URL → delete --wait → unknown VM; each step checked against the API."""
    image = make_qcow2(tmp_path / "base.qcow2")
    key = ssh_public_key(tmp_path)
    name = unique_name("web")

    created = await lq("vm", "create", name, "--image", str(image), "--memory", "256M",
                       "--disk", "1G", "--network", "isolated", "--ssh-key", str(key),
                       "--wait", "running")
    assert created.code == 0, created.err
    assert f"{name} is running on node-a" in created.out
    assert re.search(rf"^{name}: running$", created.err, re.M), created.err  # status line
    # The status line only moves forward: events replayed from before the record was read
    # (the stream opens before the POST) do not take it back.
    order = ["pending", "creating", "starting", "running"]
    shown = [line.split(": ", 1)[1] for line in created.err.splitlines()
             if line.startswith(f"{name}: ") and line.split(": ", 1)[1] in order]
    assert shown == sorted(shown, key=order.index), created.err
    status, record = api_get(stack, f"/v1/vms/{name}")
    assert status == 200 and record["state"] == "running"
    assert record["memory_mib"] == 256 and record["disk_gib"] == 1
    assert record["network"]["mode"] == "isolated"
    assert record["cloud_init"]["ssh_authorized_keys"] == [key.read_text().strip()]
    port = next(f["host_port"] for f in record["forwards"] if f["guest_port"] == 22)
    assert f"ssh -p {port} admin@127.0.0.1" in created.out  # how to connect
    assert "host key:" in created.out

    listed = await lq("vm", "list")
    assert listed.code == 0
    header, *rows = listed.out.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "NODE"]
    assert [row.split()[:3] for row in rows] == [[name, "running", "node-a"]]
    as_json = await lq("vm", "list", "--json")
    assert [vm["id"] for vm in json.loads(as_json.out)] == [record["id"]]

    shown = await lq("vm", "show", record["id"], "--json")  # by id as well as by name
    assert json.loads(shown.out)["name"] == name
    shown = await lq("vm", "show", name)
    assert re.search(r"^state:\s+running$", shown.out, re.M)

    for action, state in (("stop", "stopped"), ("start", "running"), ("pause", "paused"),
                          ("resume", "running")):
        result = await lq("vm", action, name, "--wait")
        assert result.code == 0, result.err
        assert result.out.strip() == f"{name}: {state}"
        assert api_get(stack, f"/v1/vms/{name}")[1]["state"] == state

    illegal = await lq("vm", "resume", name)
    assert illegal.code == 1
    assert "(illegal_transition)" in one_error_line(illegal.err)

    events = await lq("events", "--vm", name, "--since", "10m", "--json", "--limit", "4")
    assert events.code == 0, events.err
    seen = [json.loads(line) for line in events.out.splitlines()]
    assert all(e["vm_id"] == record["id"] and e["type"] == "vm.state_changed" for e in seen)
    assert [e["state"] for e in seen] == ["pending", "creating", "starting", "running"]
    assert [int(e["id"]) for e in seen] == sorted(int(e["id"]) for e in seen)
    plain = await lq("events", "--vm", name, "--since", "10m", "--limit", "1")
    assert re.fullmatch(rf"\S+Z  #\d+  vm.state_changed  {name}: - -> pending.*\n", plain.out)

    ssh = await lq("vm", "ssh", name, "--print", "--", "uname", "-a")
    assert ssh.code == 0, ssh.err
    assert ssh.out.startswith(f"ssh -p {port} ")
    assert f"HostKeyAlias=lq-{record['id']}" in ssh.out and ssh.out.strip().endswith(
        "admin@127.0.0.1 uname -a")
    assert "fingerprint is unknown" in ssh.err  # the test driver has no guest to report keys

    # The console link holds a single-use ticket, never the API token; the test driver has no
    # display to issue one for (tests/ui/test_console_link.py opens real ones).
    console = await lq("vm", "console", name)
    assert console.code != 0 and "console_unavailable" in console.err, console.err
    assert stack.api_token not in console.out + console.err
    with urllib.request.urlopen(f"{stack.api_url}/v1/vms/{record['id']}/console",
                                timeout=10) as page:
        assert page.status == 200 and "html" in page.headers["Content-Type"]

    log = await lq("vm", "log", name)
    assert log.code == 0, log.err
    with urllib.request.urlopen(urllib.request.Request(
            f"{stack.api_url}/v1/vms/{name}/console-log", headers=stack.headers()),
            timeout=10) as response:
        assert log.out == response.read().decode()

    deleted = await lq("vm", "delete", name, "--wait")
    assert deleted.code == 0 and deleted.out.strip() == f"{name}: deleted"
    assert api_get(stack, f"/v1/vms/{record['id']}")[0] == 404

    missing = await lq("vm", "show", name)
    assert missing.code == 1 and missing.out == ""
    assert "(vm_not_found)" in one_error_line(missing.err)


async def test_waiting_for_ready_that_never_comes_exits_3(lq: Lq, tmp_path: Path) -> None:
    """The test driver has no guest, so ``ready`` never comes: exit 3, the VM stays."""
    image = make_qcow2(tmp_path / "base.qcow2")
    name = unique_name("slow")
    result = await lq("vm", "create", name, "--image", str(image), "--memory", "128M", "--disk",
                      "1G", "--wait", "ready", "--timeout", "3s")
    assert result.code == 3, result.err
    assert "(wait_timeout)" in one_error_line(result.err)
    assert f"{name}: running" in result.err  # the status line got as far as running
    assert (await lq("vm", "show", name)).code == 0


async def test_image_import_upload_and_use_with_progress(
        lq: Lq, stack: Stack, file_server: tuple[str, Path], tmp_path: Path) -> None:
    base_url, www = file_server
    image = make_qcow2_with_data(www / "data.qcow2", 20)  # 20 MiB at 8 MiB/s: ~2.5 s of progress
    sha256 = hashlib.sha256(image.read_bytes()).hexdigest()

    imported = await lq("image", "import", f"{base_url}/data.qcow2", "--sha256", sha256,
                        "--name", "data")
    assert imported.code == 0, imported.err
    progress = [line for line in imported.err.splitlines() if "%" in line]
    assert len(progress) >= 2, imported.err  # driven by image.progress events, ~1/s
    assert progress[-1].startswith("data: [" + "#" * 24 + "] 100%")
    assert any(re.search(r"MiB/s  ETA \d", line) for line in progress), progress
    states = [line.split(": ", 1)[1] for line in imported.err.splitlines()
              if "%" not in line and line.startswith("data: ")]
    assert states[-2:] == ["verifying", "active"]
    image_id = re.search(r"^Importing (\S+) ", imported.out, re.M).group(1)  # type: ignore[union-attr]
    status, record = api_get(stack, f"/v1/images/{image_id}")
    assert status == 200 and record["state"] == "active" and record["sha256"] == sha256
    assert f"sha256 {sha256}" in imported.out

    wrong = await lq("image", "import", f"{base_url}/data.qcow2", "--sha256", "0" * 64)
    assert wrong.code == 1
    assert "(checksum_mismatch)" in one_error_line(wrong.err)
    missing = await lq("image", "import", f"{base_url}/nothing.qcow2")
    assert missing.code == 1
    assert "404" in one_error_line(missing.err)

    # A shipped catalog entry by its id, fetched from a local mirror (no internet here).
    catalog = await lq("image", "import", "debian-12", "--mirror", f"{base_url}/data.qcow2")
    assert catalog.code == 0, catalog.err
    assert catalog.out.splitlines()[0].startswith("Importing debian-12 ")
    assert api_get(stack, "/v1/images/debian-12")[1]["state"] == "active"

    uploaded = await lq("image", "upload", str(image), "--name", "uploaded")
    assert uploaded.code == 0, uploaded.err
    assert "uploaded: [" + "#" * 24 + "] 100%" in uploaded.err
    listed = json.loads((await lq("image", "list", "--json", "--state", "active")).out)
    assert sorted((i["id"] if i["id"] == "debian-12" else i["name"], i["sha256"])
                  for i in listed) == [("data", sha256), ("debian-12", sha256),
                                       ("uploaded", sha256)]

    # A VM from the imported image (the node fetches it from the library), then the image
    # cannot be deleted while the VM uses it; by name once the VM is gone.
    vm = await lq("vm", "create", unique_name("img"), "--image", image_id, "--memory", "128M",
                  "--disk", "1G", "--wait", "running")
    assert vm.code == 0, vm.err
    # The node's download of the image into its cache shows on the status line.
    assert re.search(r": creating \(fetching image 100% of 20\.\d MiB\)$", vm.err, re.M), vm.err
    busy = await lq("image", "delete", "data")
    assert busy.code == 1 and "(image_in_use)" in one_error_line(busy.err)
    gone = await lq("image", "delete", "uploaded")
    assert gone.code == 0
    assert (await lq("image", "show", "uploaded")).code == 1


async def test_errors_are_one_clear_line(lq: Lq, stack: Stack, tmp_path: Path) -> None:
    bad_flag = await lq("vm", "create", "x", "--image", "y", "--cpus", "many")
    assert bad_flag.code == 2 and "(usage)" in bad_flag.err

    unknown = await lq("vm", "stop", "no-such-vm", "--wait")
    assert unknown.code == 1
    assert "(vm_not_found)" in one_error_line(unknown.err)

    wrong_token = await lq("vm", "list", env={"LQ_API_TOKEN": "wrong"})
    assert wrong_token.code == 1
    line = one_error_line(wrong_token.err)
    assert "(unauthorized)" in line and "token from LQ_API_TOKEN" in line

    nodes = await lq("node", "list")
    assert nodes.code == 0 and nodes.out.splitlines()[1].split()[:2] == ["node-a", "online"]

    await stack.services["api"].stop()  # the API goes down for real
    down = await lq("node", "list")
    assert down.code == 1 and down.out == ""
    line = one_error_line(down.err)
    assert f"cannot reach the API at {stack.api_url}: connection refused" in line
    assert "(api_unreachable)" in line

    nowhere = await lq("vm", "list", env={"LQ_URL": f"http://127.0.0.1:{free_port()}"})
    assert nowhere.code == 1 and "(api_unreachable)" in one_error_line(nowhere.err)


async def test_token_is_read_from_the_local_data_dir(tmp_path: Path) -> None:
    """No --token, no LQ_API_TOKEN: the API's generated <data dir>/api-token is used."""
    async with Stack(tmp_path / "stack", api_token="", nodes=(), with_image_library=False) as stack:
        env = base_env(tmp_path)
        env.update(LQ_URL=stack.api_url, LQ_DATA_DIR=str(stack.token_file.parent))
        result = await Lq(env)("node", "list")
        assert result.code == 0, result.err
        assert result.out.split() == ["ID", "STATUS", "VIRT", "CPUS", "MEMORY", "DISK", "FREE",
                                      "VMS", "HEARTBEAT", "WARNINGS"]


async def test_events_follow_resumes_across_an_api_restart(lq: Lq, stack: Stack,
                                                           tmp_path: Path) -> None:
    """``lq events`` keeps following while the API restarts: after reconnecting with
    Last-Event-ID it shows what happened since, with no event lost or repeated."""
    image = make_qcow2(tmp_path / "base.qcow2")
    before, after = unique_name("before"), unique_name("after")
    assert (await lq("vm", "create", before, "--image", str(image), "--memory", "128M",
                     "--disk", "1G", "--wait", "running")).code == 0
    follower = await asyncio.create_subprocess_exec(
        LQ, "events", "--json", "--since", "1h", env=lq.env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    seen: list[bytes] = []

    async def follow_until(name: str, state: str, timeout_s: float = 30.0) -> None:
        """Read the follower's lines until it shows ``name`` reaching ``state``."""
        assert follower.stdout is not None
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await follower.stdout.readline()
                assert raw, "lq events stopped"
                seen.append(raw)
                event = json.loads(raw)
                if (event.get("name"), event.get("state")) == (name, state):
                    return

    try:
        await follow_until(before, "running")  # caught up with the replay
        api = stack.services["api"]
        await api.stop()
        await api.start()  # same port, same token
        await wait_readyz(stack)
        created = await lq("vm", "create", after, "--image", str(image), "--memory", "128M",
                           "--disk", "1G", "--wait", "running", timeout_s=90)
        assert created.code == 0, created.err
        await follow_until(after, "running")
    finally:
        follower.terminate()
        out, err = await follower.communicate()
    events = [json.loads(line) for line in b"".join(seen).decode().splitlines()]
    events += [json.loads(line) for line in out.decode().splitlines()]
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(set(ids)), "an event was repeated or out of order"
    assert ids == list(range(ids[0], ids[0] + len(ids))), "an event was lost"
    states = {(e.get("name"), e.get("state")) for e in events if e["type"] == "vm.state_changed"}
    assert {(before, "running"), (after, "pending"), (after, "running")} <= states, err


async def test_ctrl_c_while_waiting_exits_130_and_leaves_the_vm(lq: Lq, tmp_path: Path) -> None:
    image = make_qcow2(tmp_path / "base.qcow2")
    name = unique_name("int")
    waiting = await asyncio.create_subprocess_exec(
        LQ, "vm", "create", name, "--image", str(image), "--memory", "128M", "--disk", "1G",
        "--wait", "ready", env=lq.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert waiting.stdout is not None
    # "Creating …" is printed once the POST answered: from there on lq is waiting.
    created = await asyncio.wait_for(waiting.stdout.readline(), 30)
    assert created.startswith(b"Creating "), created
    waiting.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(waiting.communicate(), 10)
    assert waiting.returncode == 130
    assert "interrupted" in err.decode()
    assert (await lq("vm", "show", name)).code == 0
