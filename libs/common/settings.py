"""Settings from ``LQ_*`` environment variables: one table for every service.

``python -m limiquantix.common.settings`` prints the table that README.md embeds.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import msgspec

from limiquantix.common.model import Model


class Settings(Model, frozen=True, kw_only=True):
    """Every setting, its default and (in ``_DOCS``) what it means."""

    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds: str = ""  # this service's nkey seed file (0600); empty: anonymous
    nats_ca_file: str = ""  # CA bundle that signed the NATS server's TLS certificate
    jetstream_replicas: int = 1  # copies of every stream and bucket: 1 alone, 3 in a cluster
    data_dir: str = "/var/lib/limiquantix"
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    # API gateway
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_token: str = ""
    public_url: str = ""
    console_origins: str = ""  # comma-separated extra allowed Origins
    console_allow_no_origin: bool = False
    console_ticket_ttl_s: float = 60.0
    console_idle_timeout_s: float = 900.0
    console_max_session_s: float = 8 * 3600.0
    request_timeout_s: float = 5.0
    create_sweep_after_s: float = 60.0
    http_header_timeout_s: float = 15.0  # API and image library: time to send a request head
    http_max_connections: int = 512  # per HTTP server; idle ones are closed first at the cap
    sse_max_clients: int = 100  # concurrent GET /v1/events streams per API process
    sse_write_timeout_s: float = 10.0  # a stream whose client takes no byte this long is dropped
    webhook_allowed_networks: str = ""  # CIDRs webhooks may reach although not public
    webhook_timeout_s: float = 10.0
    webhook_retry_max_s: float = 60.0
    webhook_give_up_s: float = 86400.0
    metrics_public: bool = False  # GET /metrics without the bearer token
    # node agent
    node_id: str = ""
    libvirt_uri: str = "qemu:///system"
    virt_type: str = "auto"  # auto | kvm | qemu
    console_host: str = "127.0.0.1"
    heartbeat_interval_s: float = 5.0
    reconcile_interval_s: float = 30.0
    command_ack_wait_s: float = 30.0
    stop_timeout_s: float = 60.0
    guest_agent_refresh_s: float = 30.0
    guest_agent_shutdown_s: float = 30.0
    guest_file_max_bytes: int = 256 * 1024 * 1024
    node_vcpus: int = 0  # 0: what the host has
    node_memory_mib: int = 0
    cpu_allocation_ratio: float = 4.0
    memory_allocation_ratio: float = 1.0
    reserved_host_memory_mib: int = 512
    image_cache_max_gib: float = 50.0
    transient_retry_s: float = 120.0  # node: how long transient failures are retried
    failpoints: str = ""  # tests only: "name=action,..." (see node_agent/failpoints.py)
    forward_port_range: str = "20000-29999"  # host ports of user-mode forwards, "low-high"
    user_network_outbound: bool = False  # user mode: guests may open outbound connections
    node_metrics_host: str = "127.0.0.1"
    node_metrics_port: int = 0  # 0: off (several agents share a host in lq-local and tests)
    # image library
    image_library_host: str = "127.0.0.1"
    image_library_port: int = 9292
    image_library_url: str = ""  # how nodes reach it; default http://host:port
    import_allowed_schemes: str = "http,https"
    import_allowed_networks: str = ""  # CIDRs imports may reach although not public
    image_library_secret_file: str = ""  # default <data_dir>/image-library.key
    catalog_mirror: str = ""  # base URL serving <catalog id>.<format>
    host_image_dirs: str = ""  # comma-separated; empty: VMs use library images only
    image_store: str = "local"  # local | jetstream: where the image library keeps its files

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def effective_node_id(self) -> str:
        return self.node_id or socket.gethostname().split(".")[0].lower()

    @property
    def host_image_roots(self) -> tuple[str, ...]:
        """The directories of ``host_image_dirs``, normalised, empty entries dropped."""
        return tuple(os.path.normpath(d.strip()) for d in self.host_image_dirs.split(",")
                     if d.strip())

    @property
    def effective_image_library_url(self) -> str:
        return self.image_library_url or (
            f"http://{self.image_library_host}:{self.image_library_port}"
        )


_DOCS: dict[str, str] = {
    "nats_url": "NATS server(s), comma-separated",
    "nats_creds": "File holding this service's NATS nkey seed (0600; `lq-local` makes one per "
                  "service); empty: connect anonymously",
    "nats_ca_file": "CA certificate(s) that verify the NATS server's TLS certificate (`tls://` "
                    "URLs; empty: the system's CAs)",
    "jetstream_replicas": "Copies of every JetStream stream and KV bucket the gateway lays out: "
                          "1 on one NATS server, 3 on a three-server cluster (a running "
                          "deployment is changed in place at the gateway's next start)",
    "data_dir": "Root of all state on disk: NATS data (local mode), VM files, image store, token",
    "log_format": "`auto` (JSON unless a TTY), `json` or `console`",
    "log_level": "debug, info, warning, error",
    "api_host": "API gateway listen address",
    "api_port": "API gateway port",
    "metrics_public": "Serve the gateway's Prometheus `/metrics` without the bearer token "
                      "(viewer role otherwise)",
    "node_metrics_host": "Node agent's Prometheus `/metrics` listen address",
    "node_metrics_port": "Node agent's Prometheus `/metrics` port; 0: off (the default: "
                         "several agents may share one host; deploy/ sets 9464)",
    "api_token": "Bearer token for /v1; when empty, generated once into `<data_dir>/api-token`",
    "public_url": "URL clients use to reach the API (console links); default from the request",
    "console_origins": "Extra allowed `Origin`s for console WebSockets, comma-separated",
    "console_allow_no_origin": "Allow console WebSockets without `Origin` (non-browser clients)",
    "console_ticket_ttl_s": "Seconds a console ticket may wait for its first use",
    "console_idle_timeout_s": "Console session closed after this many seconds without traffic",
    "console_max_session_s": "Longest console session, seconds",
    "request_timeout_s": "Timeout of NATS requests made by the gateway",
    "create_sweep_after_s": "A pending VM unchanged this long gets its create sent again; a "
                            "name with no VM this long is freed (gateway crash recovery)",
    "http_header_timeout_s": "API and image library: seconds a client has to send a request "
    "head (and the keep-alive idle limit)",
    "http_max_connections": "API and image library: open connections per server; at the cap "
    "the oldest idle one is closed, and a new one gets 503 when all are busy",
    "sse_max_clients": "Concurrent event streams (GET /v1/events) per API process; past it 503 "
    "with Retry-After",
    "sse_write_timeout_s": "An event stream whose client takes no byte for this long is dropped "
    "(it resumes with Last-Event-ID and loses nothing)",
    "webhook_allowed_networks": "Comma-separated CIDRs webhook URLs may reach although "
    "loopback/private/link-local (refused by default; separate from the imports' list)",
    "webhook_timeout_s": "Seconds a webhook receiver has to answer one delivery",
    "webhook_retry_max_s": "Longest wait between a webhook delivery's retries (backoff from "
    "0.5 s, doubling)",
    "webhook_give_up_s": "A webhook delivery failing this long (its retry waits added up) is "
    "dropped and logged as `gave_up`; the webhook's next event follows",
    "node_id": "This node's id (node agent); default the short host name",
    "libvirt_uri": "libvirt connection; `test:///default` runs without QEMU",
    "virt_type": "`auto` probes KVM and falls back to TCG (`qemu`); or force `kvm` / `qemu`",
    "console_host": "Address VNC displays and port forwards bind to on the node",
    "heartbeat_interval_s": "Node heartbeat period; a node is gone after 3 missed beats",
    "reconcile_interval_s": "How often a node compares libvirt's domains with its records",
    "command_ack_wait_s": "JetStream ack wait of node commands (redelivery after a crash)",
    "stop_timeout_s": "ACPI shutdown grace before a stop powers the VM off",
    "guest_agent_refresh_s": "How often the node re-reads each running VM's guest agent (OS, "
                             "users, file systems, addresses); 0: only when it connects",
    "guest_agent_shutdown_s": "Of a stop's grace, how long the guest agent's shutdown may take "
                              "before ACPI is tried (when an agent is connected)",
    "guest_file_max_bytes": "Largest file PUT or GET /v1/vms/{vm}/files moves through the guest "
                            "agent",
    "node_vcpus": "vCPUs this node offers (0: the host's count)",
    "node_memory_mib": "Memory this node offers in MiB (0: the host's)",
    "cpu_allocation_ratio": "vCPUs placed per physical CPU (Nova's default 4.0; 1.0: no "
                            "over-commit)",
    "memory_allocation_ratio": "Memory placed per MiB the node offers (1.0: no over-commit)",
    "reserved_host_memory_mib": "Memory kept for the host itself, off the node's capacity "
                                "(when LQ_NODE_MEMORY_MIB is 0; a set figure is already net)",
    "image_cache_max_gib": "Node image cache limit; least recently used unused images go first",
    "transient_retry_s": "Node agent: seconds a transient failure (image library or NATS "
                         "unreachable, libvirt reconnecting) is retried with backoff before "
                         "the VM's action fails",
    "failpoints": "Fault injection for tests only, e.g. `before_ack=sleep:5`",
    "forward_port_range": "Host ports (`low-high`) port forwards of `user`/`isolated` VMs may "
                          "use; a request outside is refused (422), free ones are picked in it",
    "user_network_outbound": "`user` networking without `restrict=on`: guests get outbound "
                             "NAT and also reach the node's loopback services (10.0.2.2); "
                             "off: only the declared forwards, like `isolated`",
    "image_library_host": "Image library HTTP listen address",
    "image_library_port": "Image library HTTP port (image files, uploads)",
    "image_library_url": "URL nodes and the gateway use to reach the image library",
    "import_allowed_schemes": "URL schemes image imports may use",
    "import_allowed_networks": "Comma-separated CIDRs image imports may fetch from although "
    "loopback/private/link-local (refused by default), e.g. `10.1.0.0/16` for a local mirror",
    "image_library_secret_file": "Secret shared by the gateway, nodes and image library to sign "
    "image file requests; default `<data_dir>/image-library.key` (created 0600 if missing)",
    "catalog_mirror": "Base URL of a mirror serving the catalog's images as `<id>.<format>` "
                      "(empty: the distributions' official URLs)",
    "image_store": "Where the image library keeps image files: `local` (its data dir, one "
                   "instance) or `jetstream` (a NATS Object Store with the streams' replicas; "
                   "every instance serves every file, its data dir a cache)",
    "host_image_dirs": "Node directories whose files a VM may name as `image` (comma-separated; "
                       "empty, the default: library images only)",
}


def load(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``LQ_<FIELD>`` variables (upper case), then explicit overrides."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        value = env.get(f"LQ_{field.name.upper()}")
        if value is not None:
            raw[field.name] = value
    raw.update(overrides)
    return msgspec.convert(raw, Settings, strict=False)


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for field in msgspec.structs.fields(Settings):
        default = field.default
        rows.append(f"| `LQ_{field.name.upper()}` | `{default}` | {_DOCS[field.name]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
