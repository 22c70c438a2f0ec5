"""The NoCloud seed files of a VM: user-data, meta-data and optional network-config/vendor-data.

Pure functions of the VM record (the API validated the cloud-init parts already).

Merge rule, when the user sent custom user-data:
  user-data becomes a MIME multipart document, the user's part(s) first and the generated
  ``#cloud-config`` LAST, carrying ``merge_how: dict(no_replace,recurse_list)+list(append)+str()``.
  cloud-init merges parts in order, each onto what came before, with that part's own rule; so:
  - lists are concatenated: the user's ``users``, ``runcmd``, ``packages``,
    ``ssh_authorized_keys`` ... come first, then the generated ones. Nobody's keys are lost.
  - nested mappings are merged key by key.
  - on a scalar both set (``hostname``, ``ssh_pwauth``, ``locale`` ...), the user's value wins:
    custom user-data is how a user overrides what the platform generates.
  - a ``#!`` script becomes a ``text/x-shellscript`` part (run once per instance, at the end);
    other cloud-init formats (``#include``, ``#cloud-boothook``, jinja templates ...) keep
    their own content type; a user's MIME multipart is flattened, its parts keep their order
    and their own merge rules among themselves.
Without custom user-data the generated ``#cloud-config`` is sent alone, as is.
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import yaml

from limiquantix.common.vms import VmRecord

# How the generated part merges onto the user's parts (see the module docstring).
MERGE_HOW = "dict(no_replace,recurse_list)+list(append)+str()"
MIME_BOUNDARY = "==limiquantix-user-data=="
# libyaml's emitter when PyYAML has it: the same YAML, several times less CPU per create.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# First line of a part -> cloud-init's MIME type for it (cloudinit/handlers/__init__.py).
_STARTS_WITH_TYPE = (
    ("## template: jinja", "text/jinja2"),
    ("#cloud-config-archive", "text/cloud-config-archive"),
    ("#cloud-config-jsonp", "text/cloud-config-jsonp"),
    ("#cloud-config", "text/cloud-config"),
    ("#cloud-boothook", "text/cloud-boothook"),
    ("#part-handler", "text/part-handler"),
    ("#upstart-job", "text/upstart-job"),
    ("#include-once", "text/x-include-once-url"),
    ("#include", "text/x-include-url"),
    ("#!", "text/x-shellscript"),
)


# Installs and starts the QEMU guest agent when the image lacks it (docs/guest-agent.md). A
# runcmd rather than ``packages:``: that module fails hard without a package mirror (a guest
# with no network), and its failure would fail cloud-init. This one tries each package manager
# in turn, bounded by ``timeout``, and always succeeds; the agent then simply stays absent.
GUEST_AGENT_INSTALL = (
    "command -v qemu-ga >/dev/null 2>&1"
    " || (command -v apt-get >/dev/null 2>&1 && export DEBIAN_FRONTEND=noninteractive"
    " && { timeout 120 apt-get install -y qemu-guest-agent"
    " || { timeout 120 apt-get update && timeout 120 apt-get install -y qemu-guest-agent; }; })"
    " || (command -v dnf >/dev/null 2>&1 && timeout 240 dnf install -y qemu-guest-agent)"
    " || (command -v yum >/dev/null 2>&1 && timeout 240 yum install -y qemu-guest-agent)"
    " || (command -v zypper >/dev/null 2>&1"
    " && timeout 240 zypper --non-interactive install qemu-guest-agent)"
    " || (command -v apk >/dev/null 2>&1 && timeout 120 apk add qemu-guest-agent)"
    " || true;"
    " systemctl enable --now qemu-guest-agent >/dev/null 2>&1"
    " || systemctl start qemu-guest-agent >/dev/null 2>&1"
    " || rc-service qemu-guest-agent start >/dev/null 2>&1 || true"
)


def generated_config(record: VmRecord) -> dict[str, object]:
    """The platform's cloud-config: host name, the default user and its access, and the
    guest agent unless the VM opted out."""
    ci = record.cloud_init
    user: dict[str, object] = {
        "name": ci.user,
        "groups": ["sudo"],
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "shell": "/bin/bash",
        "ssh_authorized_keys": list(ci.ssh_authorized_keys),
    }
    if ci.password_hash:
        user["passwd"] = ci.password_hash
        user["lock_passwd"] = False
    config: dict[str, object] = {
        "hostname": ci.hostname or record.name,
        # Without it sudo warns that it cannot resolve the host name.
        "manage_etc_hosts": True,
        # Without it 'cloud-init status' ends in error on minimal images.
        "locale": ci.locale,
        "users": [user],
        # Only key types today's sshd offers: cloud-init 22.4 also makes a DSA key that sshd
        # refuses to serve, a fingerprint clients would never see.
        "ssh_genkeytypes": ["rsa", "ecdsa", "ed25519"],
    }
    if ci.ssh_pwauth:
        config["ssh_pwauth"] = True
    if ci.guest_agent:
        config["runcmd"] = [["sh", "-c", GUEST_AGENT_INSTALL]]
    return config


def _cloud_config(config: dict[str, object]) -> str:
    return "#cloud-config\n" + yaml.dump(config, Dumper=_DUMPER, sort_keys=False)


def _content_type(text: str) -> str:
    for prefix, content_type in _STARTS_WITH_TYPE:
        if text.startswith(prefix):
            return content_type
    return "text/plain"


def _text_part(text: str, content_type: str, filename: str) -> Message:
    subtype = content_type.split("/", 1)[1]
    part = MIMEText(text, subtype, "utf-8")
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


def _user_parts(custom: str) -> list[Message]:
    if custom.lstrip().startswith("#") or "multipart/" not in custom[:4096].lower():
        return [_text_part(custom, _content_type(custom), "user-data")]
    parsed = email.message_from_string(custom, policy=email.policy.compat32)
    return [part for part in parsed.walk() if not part.is_multipart()]


def user_data(record: VmRecord) -> bytes:
    """The ``user-data`` file: the generated config, merged with custom user-data if any."""
    generated = generated_config(record)
    custom = record.cloud_init.user_data
    if not custom.strip():
        return _cloud_config(generated).encode()
    document = MIMEMultipart(boundary=MIME_BOUNDARY)
    for part in _user_parts(custom):
        document.attach(part)
    document.attach(_text_part(_cloud_config({**generated, "merge_how": MERGE_HOW}),
                               "text/cloud-config", "limiquantix.cfg"))
    return document.as_bytes()


def meta_data(record: VmRecord) -> bytes:
    """``instance-id`` decides first boot: stable unless the user asks for a new one."""
    data = {
        "instance-id": record.instance_id or record.id,
        "local-hostname": record.cloud_init.hostname or record.name,
    }
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False).encode()


def seed_files(record: VmRecord) -> dict[str, bytes]:
    """File name -> content of the seed ISO (label ``cidata``)."""
    files = {"user-data": user_data(record), "meta-data": meta_data(record)}
    if record.cloud_init.network_config.strip():
        files["network-config"] = record.cloud_init.network_config.encode()
    if record.cloud_init.vendor_data.strip():
        files["vendor-data"] = record.cloud_init.vendor_data.encode()
    return files
