"""NATS identities (one nkey per service) and the subjects each may use: the server's config.

Every service connects as its own nkey user; the server's config lists the public keys, each with
its subject permissions, and refuses anyone else (no ``no_auth_user``). A service holds only its
seed, in a 0600 file named by ``LQ_NATS_CREDS``. Why nkeys in a plain config rather than
operator/JWT accounts, and the table of what each identity may do: docs/security.md.

Identities: ``api`` (the gateway: owns the JetStream layout, publishes commands), ``image-library``
and ``node-<node id>`` (one per node agent: its own command consumer, heartbeat key and RPC
subject). Each identity also gets its own reply inbox, ``_INBOX.<public key>``, so no one reads
another's replies (the gateway's KV reads carry every record).

``python -m limiquantix.common.nats_auth DIR --nodes a,b`` writes the seeds and the server's
``authorization`` block for a deployment (deploy/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

import msgspec
import nkeys

from limiquantix.common import subjects

API = "api"
IMAGE_LIBRARY = "image-library"
SEED_SUFFIX = ".nk"
AUTH_CONF = "authorization.conf"

_NODE_PREFIX = "node-"
_IDENTITY = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")


class NatsAuthError(Exception):
    """A seed file is missing, malformed or readable by others."""


class Permissions(msgspec.Struct, frozen=True, kw_only=True):
    """What one identity may publish and subscribe to (nats-server ``permissions``)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()  # carved out of ``publish``
    allow_responses: bool = False  # may answer requests it received (once each)


def node_identity(node_id: str) -> str:
    """Identity name of a node agent (its durable consumer's name too)."""
    return subjects.node_consumer(node_id)


def inbox_prefix(public_key: str) -> str:
    """The reply inbox of one identity: only it may subscribe below it."""
    return f"_INBOX.{public_key}"


def _js(*apis: str) -> list[str]:
    return [f"$JS.API.{api}" for api in apis]


def _kv_read(bucket: str) -> list[str]:
    """JetStream API subjects a client of ``bucket`` needs to open, get, list and watch it."""
    stream = f"KV_{bucket}"
    return [
        *_js(f"STREAM.INFO.{stream}", f"STREAM.MSG.GET.{stream}", f"DIRECT.GET.{stream}",
             f"DIRECT.GET.{stream}.>", f"CONSUMER.CREATE.{stream}", f"CONSUMER.CREATE.{stream}.>",
             f"CONSUMER.INFO.{stream}.*"),
        f"$JS.FC.{stream}.>",  # flow control replies of the watchers' ordered consumers
    ]


def _kv_watch(bucket: str) -> list[str]:
    """What a watcher of some keys of ``bucket`` needs: no get, list or write (a node watches
    its own allocation record; the consumer's filter cannot be pinned in the subject, as an
    ordered consumer is unnamed)."""
    stream = f"KV_{bucket}"
    return [*_js(f"STREAM.INFO.{stream}", f"CONSUMER.CREATE.{stream}",
                 f"CONSUMER.INFO.{stream}.*"), f"$JS.FC.{stream}.>"]


def api_permissions(public_key: str) -> Permissions:
    """The gateway: owns every stream and bucket, publishes commands, reads everything; writes
    every bucket (its own: VMs, names, idempotency, console tickets, API tokens, webhooks and
    their delivery logs, ...) but the nodes' heartbeats and the image library's catalog. Webhook
    deliveries are its durable consumers on the events stream (``webhook-<id>``). No other
    identity may read ``lq_webhooks``: it holds the webhooks' signing secrets."""
    return Permissions(
        publish=(
            "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>",
            subjects.all_commands(), subjects.all_events(), f"{subjects.PREFIX}.rpc.>",
        ),
        publish_deny=(f"$KV.{subjects.NODES_BUCKET}.>", f"$KV.{subjects.IMAGES_BUCKET}.>"),
        subscribe=(inbox_prefix(public_key) + ".>", subjects.all_events(),
                   subjects.all_dead_letters()),
    )


def _object_store(bucket: str) -> list[str]:
    """What a client of the Object Store ``bucket`` needs to put, get and delete objects."""
    stream = f"OBJ_{bucket}"
    return [
        *_js(f"STREAM.INFO.{stream}", f"STREAM.MSG.GET.{stream}", f"DIRECT.GET.{stream}",
             f"DIRECT.GET.{stream}.>", f"STREAM.PURGE.{stream}", f"CONSUMER.CREATE.{stream}",
             f"CONSUMER.CREATE.{stream}.>", f"CONSUMER.DELETE.{stream}.>",
             f"CONSUMER.INFO.{stream}.*", "STREAM.NAMES"),
        f"$JS.FC.{stream}.>", f"$O.{bucket}.>",
    ]


def image_library_permissions(public_key: str) -> Permissions:
    """The image library: its bucket, its files' Object Store (``LQ_IMAGE_STORE=jetstream``),
    image events, and the image RPC queue group."""
    return Permissions(
        publish=(
            *_kv_read(subjects.IMAGES_BUCKET), f"$KV.{subjects.IMAGES_BUCKET}.>",
            *_object_store(subjects.IMAGE_FILES_BUCKET),
            *_js(f"STREAM.INFO.{subjects.EVENTS_STREAM}"),
            subjects.image_events(),
        ),
        subscribe=(inbox_prefix(public_key) + ".>", subjects.image_rpc_all()),
        allow_responses=True,
    )


def node_permissions(node_id: str, public_key: str) -> Permissions:
    """A node agent: only its own commands, heartbeat key and RPC subject.

    VM ids are not node-scoped, so a node may write any VM record and any VM's events (the
    records of its VMs carry the node's work; see docs/security.md for that limit). It watches
    the allocation records (it follows its own, to know its VMs) but never writes them.
    """
    consumer = subjects.node_consumer(node_id)
    commands = subjects.COMMANDS_STREAM
    return Permissions(
        publish=(
            *_js(f"STREAM.INFO.{commands}", f"STREAM.INFO.{subjects.EVENTS_STREAM}",
                 # The filter is part of the subject, and the server checks it against the
                 # request: a node can create no consumer on another node's commands.
                 f"CONSUMER.CREATE.{commands}.{consumer}.{subjects.node_commands(node_id)}",
                 f"CONSUMER.INFO.{commands}.{consumer}",
                 f"CONSUMER.MSG.NEXT.{commands}.{consumer}"),
            f"$JS.ACK.{commands}.{consumer}.>",
            *_kv_read(subjects.VMS_BUCKET), f"$KV.{subjects.VMS_BUCKET}.*",
            *_kv_read(subjects.VM_NAMES_BUCKET), f"$KV.{subjects.VM_NAMES_BUCKET}.*",
            *_js(f"STREAM.INFO.KV_{subjects.NODES_BUCKET}"),
            f"$KV.{subjects.NODES_BUCKET}.{node_id}",
            *_kv_watch(subjects.ALLOCATIONS_BUCKET),
            subjects.vm_events(), subjects.node_events(node_id),
            subjects.image_events_of_kind("progress"),
            subjects.node_dead_letters(node_id),
            subjects.image_rpc("get"),
        ),
        subscribe=(inbox_prefix(public_key) + ".>", subjects.node_rpc_all(node_id)),
        allow_responses=True,
    )


def permissions_for(identity: str, public_key: str) -> Permissions:
    """The permissions of ``api``, ``image-library`` or ``node-<id>``."""
    if identity == API:
        return api_permissions(public_key)
    if identity == IMAGE_LIBRARY:
        return image_library_permissions(public_key)
    if identity.startswith(_NODE_PREFIX):
        return node_permissions(identity.removeprefix(_NODE_PREFIX), public_key)
    raise ValueError(f"unknown NATS identity {identity!r}")


# -- seeds ------------------------------------------------------------------------------------
def new_seed() -> str:
    """A fresh nkey user seed (``SU...``)."""
    return bytes(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)).decode()


def public_key(seed: str) -> str:
    """The user's public key (``U...``) of ``seed``."""
    try:
        return bytes(nkeys.from_seed(bytearray(seed.strip().encode())).public_key).decode()
    except nkeys.NkeysError as exc:
        raise NatsAuthError(f"not an nkey seed: {type(exc).__name__}") from None


def read_seed(path: Path) -> str:
    """The seed in ``path``, refused when others may read or write the file."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise NatsAuthError(f"cannot read the NATS credentials {path}: {exc.strerror}") from None
    if mode & 0o007:
        raise NatsAuthError(f"NATS credentials {path} are open to other users "
                            f"(mode {mode & 0o777:o}); chmod 600 it")
    seed = text.strip()
    public_key(seed)  # fails early and clearly on a malformed file
    return seed


def write_seed(path: Path, seed: str) -> None:
    """Write ``seed`` to a new 0600 file (never readable by others, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(seed + "\n")
    tmp.rename(path)


class Identities:
    """One seed file per identity in ``root``: created once, then stable across restarts."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def seed_file(self, identity: str) -> Path:
        if not _IDENTITY.match(identity):
            raise ValueError(f"not an identity name: {identity!r}")
        return self.root / f"{identity}{SEED_SUFFIX}"

    def ensure(self, identity: str) -> str:
        """The public key of ``identity``, its seed made on first use."""
        path = self.seed_file(identity)
        if not path.exists():
            write_seed(path, new_seed())
        return public_key(read_seed(path))

    def names(self) -> list[str]:
        return sorted(p.name.removesuffix(SEED_SUFFIX) for p in self.root.glob(f"*{SEED_SUFFIX}"))


def authorization(users: Iterable[tuple[str, str]]) -> dict[str, object]:
    """The server's ``authorization`` block for (identity, public key) pairs."""
    entries = []
    for identity, key in sorted(users):
        perms = permissions_for(identity, key)
        publish: dict[str, list[str]] = {"allow": list(perms.publish)}
        if perms.publish_deny:
            publish["deny"] = list(perms.publish_deny)
        permissions: dict[str, object] = {
            "publish": publish,
            "subscribe": {"allow": list(perms.subscribe)},
        }
        if perms.allow_responses:
            permissions["allow_responses"] = True
        entries.append({"nkey": key, "permissions": permissions})
    return {"users": entries}


def render(config: dict[str, object]) -> str:
    """A nats-server config file: JSON is valid NATS config, and quoting makes ``$`` literal."""
    return json.dumps(config, indent=2) + "\n"


def _main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m limiquantix.common.nats_auth",
        description="Write NATS seeds (one 0600 file per identity, kept when present) and the "
                    f"server's {AUTH_CONF} into DIR.")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--nodes", default="", help="node ids, comma-separated")
    args = parser.parse_args()
    identities = Identities(args.dir)
    names = [API, IMAGE_LIBRARY] + [node_identity(n.strip()) for n in args.nodes.split(",")
                                     if n.strip()]
    users = [(name, identities.ensure(name)) for name in names]
    (args.dir / AUTH_CONF).write_text(
        "# Generated by python -m limiquantix.common.nats_auth; public keys only.\n"
        + "authorization " + render(authorization(users)))
    for name in names:
        print(identities.seed_file(name))
    print(args.dir / AUTH_CONF)


if __name__ == "__main__":
    _main()
