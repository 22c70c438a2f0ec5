"""The Kubernetes manifests in deploy/ agree with the code they deploy.

There is no cluster on this machine (nor in CI), so nothing is applied: every document is
validated against the Kubernetes OpenAPI schemas shipped by ``kubernetes-validate``, and
cross-checked against the code itself (settings, routes, console scripts, shutdown timeout).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import kubernetes_validate
import msgspec
import pytest
import yaml

from limiquantix.common import nats_auth
from limiquantix.common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes these manifests are meant for
IMAGE = "limiquantix/limiquantix"

Doc = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


# libyaml's safe loader when PyYAML has it: the pure-Python one took ~3 s of CPU per run here.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.load_all(path.read_text(), Loader=_LOADER) if d is not None]


def all_docs() -> list[Doc]:
    return [doc for path in manifest_files() for doc in load_docs(path)]


def find(kind: str, name: str) -> Doc:
    matches = [d for d in all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_spec(doc: Doc) -> Doc:
    return cast(Doc, doc["spec"]["template"]["spec"])


def workloads() -> Iterator[Doc]:
    yield from (d for d in all_docs() if d["kind"] in {"Deployment", "StatefulSet", "DaemonSet"})


def containers() -> Iterator[tuple[Doc, Doc]]:
    for workload in workloads():
        spec = pod_spec(workload)
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield workload, container


def container(kind: str, name: str) -> Doc:
    return cast(Doc, pod_spec(find(kind, name))["containers"][0])


def env_of(c: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in c.get("env", [])}


def pyproject() -> Doc:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# ---- every document is valid Kubernetes -----------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_schema(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == "limiquantix"
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    assert [i["name"] for i in kustomization["images"]] == [IMAGE]


def test_the_expected_workloads_and_services_exist() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in all_docs()}
    assert {
        ("Namespace", "limiquantix"),
        ("ConfigMap", "limiquantix-config"),
        ("StatefulSet", "nats"), ("Service", "nats"),
        ("Deployment", "api"), ("Service", "api"),
        ("StatefulSet", "image-library"), ("Service", "image-library"),
        ("DaemonSet", "node-agent"),
        ("NetworkPolicy", "default-deny-ingress"), ("NetworkPolicy", "nats"),
        ("NetworkPolicy", "image-library"),
    } <= kinds
    # The namespace is set once, by the kustomization: no manifest pins another one.
    assert all("namespace" not in d["metadata"] for d in all_docs())


# ---- configuration --------------------------------------------------------------------------


def test_every_lq_variable_is_a_setting() -> None:
    """A typo in an LQ_* name would be silently ignored by the services: catch it here."""
    known = {f"LQ_{f.name.upper()}" for f in msgspec.structs.fields(Settings)}
    used: set[str] = set(find("ConfigMap", "limiquantix-config")["data"])
    for _, c in containers():
        used |= {name for name in env_of(c) if name.startswith("LQ_")}
    assert used, "no LQ_* variable found"
    assert {name for name in used if name.startswith("LQ_")} <= known, used - known
    assert all(name.startswith("LQ_") for name in find("ConfigMap", "limiquantix-config")["data"])


def test_config_map_values_parse_as_settings() -> None:
    data = find("ConfigMap", "limiquantix-config")["data"]
    from limiquantix.common.settings import load

    settings = load(dict(data))
    assert settings.nats_url.split(",") == [
        f"nats://nats-{i}.nats-headless:4222" for i in range(3)]
    assert settings.jetstream_replicas == 3
    assert settings.effective_image_library_url == "http://image-library:9292"


def test_services_listen_on_all_interfaces_at_their_container_ports() -> None:
    api = container("Deployment", "api")
    assert env_of(api)["LQ_API_HOST"]["value"] == "0.0.0.0"
    assert int(env_of(api)["LQ_API_PORT"]["value"]) == api["ports"][0]["containerPort"]
    library = container("StatefulSet", "image-library")
    assert env_of(library)["LQ_IMAGE_LIBRARY_HOST"]["value"] == "0.0.0.0"
    assert (int(env_of(library)["LQ_IMAGE_LIBRARY_PORT"]["value"])
            == library["ports"][0]["containerPort"])


def test_api_token_comes_from_a_secret_not_the_manifests() -> None:
    token = env_of(container("Deployment", "api"))["LQ_API_TOKEN"]
    assert "value" not in token
    assert token["valueFrom"]["secretKeyRef"] == {"name": "limiquantix-api-token", "key": "token"}
    assert not [d for d in all_docs() if d["kind"] == "Secret"], "no secret may be committed"


# ---- workloads --------------------------------------------------------------------------------


def test_api_has_two_replicas_and_a_grace_period_above_its_shutdown_timeout() -> None:
    from limiquantix.api.main import SHUTDOWN_TIMEOUT_S

    api = find("Deployment", "api")
    assert api["spec"]["replicas"] == 2
    spec = pod_spec(api)
    pre_stop = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    pre_stop_s = float(pre_stop[1]) if pre_stop[0] == "sleep" else 0.0
    assert spec["terminationGracePeriodSeconds"] > pre_stop_s + SHUTDOWN_TIMEOUT_S


def test_image_library_grace_period_is_above_its_shutdown_timeout() -> None:
    from limiquantix.image_library.http_server import SHUTDOWN_TIMEOUT_S

    spec = pod_spec(find("StatefulSet", "image-library"))
    assert spec["terminationGracePeriodSeconds"] > SHUTDOWN_TIMEOUT_S


def _http_routes(app: Any) -> set[str]:
    return {r.canonical for r in app.router.resources()}


def test_api_probes_point_at_existing_public_routes() -> None:
    from limiquantix.api.app import init
    from limiquantix.common.settings import load

    app = init(load({}, api_token="probe-check"))  # builds the router; connects nothing
    api = container("Deployment", "api")
    port_names = {p["name"]: p["containerPort"] for p in api["ports"]}
    probes = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in probes.items():
        get = api[probe]["httpGet"]
        assert get["path"] == path
        assert get["path"] in _http_routes(app)
        assert get["port"] in port_names
        assert not path.startswith("/v1/"), "a probe cannot send the bearer token"


def test_image_library_probes_point_at_an_existing_route() -> None:
    from limiquantix.image_library.http_server import make_app

    app = make_app(cast(Any, None), b"probe-check")  # both only read by handlers
    library = container("StatefulSet", "image-library")
    for probe in ("readinessProbe", "livenessProbe"):
        assert library[probe]["httpGet"]["path"] in _http_routes(app)


def test_nats_runs_jetstream_on_a_persistent_volume() -> None:
    nats = find("StatefulSet", "nats")
    conf = find("ConfigMap", "nats-config")["data"]["nats.conf"]
    store_dir = re.search(r"store_dir:\s*(\S+)", conf)
    assert store_dir, "JetStream store_dir missing"
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(nats)["containers"][0]["volumeMounts"]}
    claims = [t["metadata"]["name"] for t in nats["spec"]["volumeClaimTemplates"]]
    assert mounts["data"] == store_dir.group(1) and "data" in claims
    monitor = re.search(r"http_port:\s*(\d+)", conf)
    assert monitor
    ports = {p["name"]: p["containerPort"] for p in pod_spec(nats)["containers"][0]["ports"]}
    assert ports["monitor"] == int(monitor.group(1))
    assert ports["client"] == 4222


def test_nats_is_a_three_server_cluster_one_per_host_with_a_disruption_budget() -> None:
    """Three pods routed to each other (each by its stable name), started together, never two
    on one host, at most one down by choice; every stream has a copy on each."""
    nats = find("StatefulSet", "nats")
    replicas = nats["spec"]["replicas"]
    assert replicas == 3 and nats["spec"]["podManagementPolicy"] == "Parallel"
    conf = find("ConfigMap", "nats-config")["data"]["nats.conf"]
    cluster = re.search(r"^cluster \{(.*?)^\}", conf, re.S | re.M)
    assert cluster, "no cluster block"
    port = int(re.search(r"port:\s*(\d+)", cluster.group(1)).group(1))  # type: ignore[union-attr]
    routes = re.findall(r"nats-route://(\S+)", cluster.group(1))
    assert routes == [f"nats-{i}.{nats['spec']['serviceName']}:{port}" for i in range(replicas)]
    ports = {p["name"]: p["containerPort"] for p in pod_spec(nats)["containers"][0]["ports"]}
    assert ports["cluster"] == port
    headless = find("Service", nats["spec"]["serviceName"])
    assert {p["port"] for p in headless["spec"]["ports"]} >= {port, 4222}

    labels = nats["spec"]["template"]["metadata"]["labels"]
    terms = pod_spec(nats)["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]
    assert [t["topologyKey"] for t in terms] == ["kubernetes.io/hostname"]
    assert terms[0]["labelSelector"]["matchLabels"].items() <= labels.items()

    budget = find("PodDisruptionBudget", "nats")
    assert budget["spec"]["maxUnavailable"] == 1  # two of three keep the JetStream quorum
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()

    data = find("ConfigMap", "limiquantix-config")["data"]
    assert int(data["LQ_JETSTREAM_REPLICAS"]) == replicas
    policy = find("NetworkPolicy", "nats")["spec"]["ingress"]
    route_rules = [r for r in policy if {p["port"] for p in r["ports"]} == {port}]
    assert [r["from"] for r in route_rules] == [[{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "nats"}}}]]


def test_image_library_keeps_its_files_on_a_persistent_volume() -> None:
    library = find("StatefulSet", "image-library")
    claims = [t["metadata"]["name"] for t in library["spec"]["volumeClaimTemplates"]]
    c = pod_spec(library)["containers"][0]
    data_dir = env_of(c)["LQ_DATA_DIR"]["value"]
    assert {"name": "data", "mountPath": data_dir} in c["volumeMounts"]
    assert "data" in claims


def test_image_library_runs_two_replicas_on_the_replicated_store_apart_with_a_budget() -> None:
    """Two replicas only work on the Object Store (local disk would give each its own files);
    preferably on two hosts; a drain leaves one serving."""
    library = find("StatefulSet", "image-library")
    assert library["spec"]["replicas"] == 2
    env = {k: v["value"] for k, v in env_of(pod_spec(library)["containers"][0]).items()
           if "value" in v}
    from limiquantix.common.settings import load

    settings = load({**find("ConfigMap", "limiquantix-config")["data"], **env})
    assert settings.image_store == "jetstream"
    assert settings.jetstream_replicas == 3  # the bucket is replicated like every stream
    labels = library["spec"]["template"]["metadata"]["labels"]
    terms = pod_spec(library)["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"]
    assert [t["podAffinityTerm"]["topologyKey"] for t in terms] == ["kubernetes.io/hostname"]
    assert terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= labels.items()
    budget = find("PodDisruptionBudget", "image-library")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_node_agent_runs_on_hypervisors_with_the_host_libvirt() -> None:
    agent = find("DaemonSet", "node-agent")
    spec = pod_spec(agent)
    assert spec["nodeSelector"] == {"limiquantix.io/hypervisor": "true"}
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"  # else `nats` does not resolve
    c = spec["containers"][0]
    assert c["securityContext"]["privileged"] is True
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    # Same path inside and out: libvirt on the host opens the files the agent writes.
    assert host_paths == {name: mounts[name] for name in host_paths}
    assert set(host_paths.values()) == {"/var/run/libvirt", "/var/lib/limiquantix",
                                        "/etc/limiquantix/nats"}
    env = env_of(c)
    assert env["LQ_DATA_DIR"]["value"] == "/var/lib/limiquantix"
    assert env["LQ_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["LQ_CONSOLE_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["LQ_LIBVIRT_URI"]["value"] == "qemu:///system"


def test_services_select_pods_and_target_named_ports() -> None:
    for service in (d for d in all_docs() if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        targets = [w for w in workloads()
                   if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, f"Service {service['metadata']['name']} selects {targets}"
        port_names = {p["name"] for c in pod_spec(targets[0])["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names


def test_every_workload_selector_matches_its_template() -> None:
    for w in workloads():
        selector = w["spec"]["selector"]["matchLabels"]
        assert selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()


# ---- images and the Containerfile -------------------------------------------------------------


def _pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in {"", "latest"}


def test_every_image_is_pinned_by_tag_and_none_is_latest() -> None:
    version = pyproject()["project"]["version"]
    images = [c["image"] for _, c in containers()]
    assert images
    for image in images:
        assert _pinned(image), image
        if image.startswith(IMAGE + ":"):
            assert image == f"{IMAGE}:{version}", "the image tag follows the package version"
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["images"][0]["newTag"] == version
    assert "latest" not in (DEPLOY / "kustomization.yaml").read_text()


def test_containerfile_base_images_are_pinned() -> None:
    froms = re.findall(r"^FROM\s+(\S+)", (DEPLOY / "Containerfile").read_text(), re.MULTILINE)
    assert len(froms) >= 2
    for image in froms:
        assert _pinned(image), image


def test_every_command_is_a_console_script_the_image_installs() -> None:
    scripts = pyproject()["project"]["scripts"]
    commands = {c["command"][0] for w, c in containers() if c["image"].startswith(IMAGE)}
    assert commands == {"lq-api", "lq-image-library", "lq-node-agent"}
    assert commands <= set(scripts)
    text = (DEPLOY / "Containerfile").read_text()
    # The Containerfile copies every source directory the package maps.
    package_dirs = set(pyproject()["tool"]["setuptools"]["package-dir"].values())
    top_dirs = {d.split("/")[0] for d in package_dirs}
    for top in top_dirs:
        assert re.search(rf"^COPY {top} {top}$", text, re.MULTILINE), top


def test_containerfile_installs_the_novnc_version_setup_installs() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    wanted = re.search(r"^NOVNC_VERSION=(\S+)", setup, re.MULTILINE)
    given = re.search(r"^ARG NOVNC_VERSION=(\S+)", (DEPLOY / "Containerfile").read_text(),
                      re.MULTILINE)
    assert wanted and given and wanted.group(1) == given.group(1)


@pytest.mark.build
def test_the_wheel_the_containerfile_installs_ships_the_ui_and_novnc(tmp_path: Path) -> None:
    """Builds the package as ``pip install .`` in the Containerfile does, from the same COPYs."""
    import shutil
    import subprocess
    import sys
    import zipfile

    context = tmp_path / "context"
    context.mkdir()
    for name in re.findall(r"^COPY (?!--from)(\S+(?: \S+)*) \S+$",
                           (DEPLOY / "Containerfile").read_text(), re.MULTILINE):
        for item in name.split():
            source = ROOT / item
            if source.is_dir():
                shutil.copytree(source, context / item,
                                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                (context / item).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, context / item)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
         str(context)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("limiquantix-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = "limiquantix/api/static/"
    # The web UI's build (web/build.sh, run by scripts/setup.sh; the Containerfile's web stage).
    assert static + "app/index.html" in names, "run scripts/setup.sh: the web UI is not built"
    assert any(n.startswith(static + "app/assets/") and n.endswith(".js") for n in names)
    assert static + "novnc/core/rfb.js" in names, "run scripts/setup.sh: noVNC is not installed"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("lq-api", "lq-image-library", "lq-node-agent"):
        assert f"{script} =" in text


# ---- NATS identities, TLS and network policies (issue 10 row 1) -----------------------------

NATS_CREDS_SECRETS = {
    ("Deployment", "api"): "limiquantix-nats-api",
    ("StatefulSet", "image-library"): "limiquantix-nats-image-library",
}


def _volumes(workload: Doc) -> dict[str, Doc]:
    return {v["name"]: v for v in pod_spec(workload).get("volumes", [])}


def _mounted_file(workload: Doc, c: Doc, path: str) -> Doc:
    """The volume ``path`` lives on (read-only mount), for the workload's container ``c``."""
    for mount in c.get("volumeMounts", []):
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            assert mount.get("readOnly") is True, f"{path} must be on a read-only mount"
            return _volumes(workload)[mount["name"]]
    raise AssertionError(f"{path} is on no volume")


def test_every_service_mounts_only_its_own_nats_credentials() -> None:
    secret_names = {s for w in workloads() for v in _volumes(w).values()
                    if (s := v.get("secret", {}).get("secretName"))}
    for (kind, name), secret in NATS_CREDS_SECRETS.items():
        workload = find(kind, name)
        c = container(kind, name)
        creds = _mounted_file(workload, c, env_of(c)["LQ_NATS_CREDS"]["value"])
        assert creds["secret"]["secretName"] == secret
        assert creds["secret"]["defaultMode"] & 0o007 == 0, "others may not read a seed"
        mounted = {v["secret"]["secretName"] for v in _volumes(workload).values() if "secret" in v}
        others = (set(NATS_CREDS_SECRETS.values()) | {"nats-auth", "nats-tls"}) - {secret}
        assert not mounted & others, f"{name} mounts another identity's secrets: {mounted}"
    assert set(NATS_CREDS_SECRETS.values()) <= secret_names


def test_each_node_agent_reads_its_own_hosts_seed_not_a_shared_secret() -> None:
    agent = find("DaemonSet", "node-agent")
    c = container("DaemonSet", "node-agent")
    creds = _mounted_file(agent, c, env_of(c)["LQ_NATS_CREDS"]["value"])
    assert creds["hostPath"] == {"path": "/etc/limiquantix/nats", "type": "Directory"}
    secrets = {v["secret"]["secretName"] for v in _volumes(agent).values() if "secret" in v}
    # The image library's node key is the same on every node by design: it only reads images.
    assert secrets == {"limiquantix-nats-ca", "limiquantix-image-library-node-key"}
    assert "LQ_API_TOKEN" not in env_of(c)


def test_the_library_key_is_mounted_by_gateway_and_library_and_only_the_node_key_on_nodes(
) -> None:
    path = find("ConfigMap", "limiquantix-config")["data"]["LQ_IMAGE_LIBRARY_SECRET_FILE"]
    expected = {("Deployment", "api"): "limiquantix-image-library-key",
                ("StatefulSet", "image-library"): "limiquantix-image-library-key",
                ("DaemonSet", "node-agent"): "limiquantix-image-library-node-key"}
    for key, secret in expected.items():
        workload = find(*key)
        mounted = _mounted_file(workload, pod_spec(workload)["containers"][0], path)
        assert mounted["secret"]["secretName"] == secret, key


def test_every_service_verifies_the_nats_tls_certificate_with_the_ca() -> None:
    ca_file = find("ConfigMap", "limiquantix-config")["data"]["LQ_NATS_CA_FILE"]
    for workload in (find(*key) for key in (*NATS_CREDS_SECRETS, ("DaemonSet", "node-agent"))):
        c = pod_spec(workload)["containers"][0]
        assert _mounted_file(workload, c, ca_file)["secret"]["secretName"] == "limiquantix-nats-ca"


def test_nats_requires_tls_and_the_generated_authorization() -> None:
    conf = find("ConfigMap", "nats-config")["data"]["nats.conf"]
    assert "no_auth_user" not in conf
    nats = find("StatefulSet", "nats")
    c = pod_spec(nats)["containers"][0]
    config_dir = c["args"][c["args"].index("--config") + 1].rsplit("/", 1)[0]
    include = re.search(r"^include\s+(\S+)$", conf, re.MULTILINE)
    assert include, "the authorization block is not included"
    auth_file = str(Path(config_dir, include.group(1)).resolve())
    assert _mounted_file(nats, c, auth_file)["secret"]["secretName"] == "nats-auth"
    assert auth_file.endswith("/" + nats_auth.AUTH_CONF)
    for key in ("cert_file", "key_file"):
        found = re.search(rf"{key}:\s*(\S+)", conf)
        assert found, key
        assert _mounted_file(nats, c, found.group(1))["secret"]["secretName"] == "nats-tls"


def _policy(name: str) -> Doc:
    return find("NetworkPolicy", name)


def _from_pods(rule: Doc) -> set[str]:
    return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            for peer in rule["from"] if "podSelector" in peer}


def test_network_policies_deny_by_default_and_open_nats_and_the_library_to_us_only() -> None:
    deny = _policy("default-deny-ingress")
    assert deny["spec"]["podSelector"] == {} and "ingress" not in deny["spec"]
    expected = {"nats": ({"api", "image-library"}, 4222), "image-library": ({"api"}, 9292)}
    for name, (pods, port) in expected.items():
        spec = _policy(name)["spec"]
        assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}
        rule, *others = spec["ingress"]
        assert not others or name == "nats"  # and its routes, from NATS pods only (above)
        assert _from_pods(rule) == pods
        blocks = [peer["ipBlock"] for peer in rule["from"] if "ipBlock" in peer]
        assert len(blocks) == 1, "one ipBlock: the hypervisors (hostNetwork node agents)"
        assert [p["port"] for p in rule["ports"]] == [port]


def test_the_authorization_tool_writes_a_config_nats_server_accepts(tmp_path: Path) -> None:
    """The deploy steps in README.md, run here: seeds, authorization.conf, nats-server -t."""
    import subprocess
    import sys

    from limiquantix.common.nats_server import nats_server_binary

    auth = tmp_path / "auth"
    subprocess.run([sys.executable, "-m", "limiquantix.common.nats_auth", str(auth),
                    "--nodes", "hv1,hv2"], check=True, capture_output=True)
    assert sorted(p.name for p in auth.glob("*.nk")) == [
        "api.nk", "image-library.nk", "node-hv1.nk", "node-hv2.nk"]
    assert all(p.stat().st_mode & 0o077 == 0 for p in auth.glob("*.nk"))
    text = (auth / nats_auth.AUTH_CONF).read_text()
    for seed in auth.glob("*.nk"):
        assert seed.read_text().strip() not in text, "no seed in the server's config"
        assert nats_auth.public_key(seed.read_text()) in text
    config = tmp_path / "config" / "nats.conf"
    config.parent.mkdir()
    config.write_text(f"port: 4222\ninclude ../auth/{nats_auth.AUTH_CONF}\n")
    result = subprocess.run([nats_server_binary(), "-c", str(config), "-t"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
