"""``lq``: the argparse wiring. Every command lives in a ``commands_*`` module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from limiquantix import __version__
from limiquantix.cli import (
    commands_devices,
    commands_events,
    commands_image,
    commands_node,
    commands_snapshot,
    commands_token,
    commands_vm,
    commands_vm_access,
    commands_vm_guest,
    commands_webhook,
    completion,
)
from limiquantix.cli.context import Context
from limiquantix.cli.errors import EXIT_OK, EXIT_USAGE, CliError

Handler = Callable[[Context], int]

EXIT_CODES = """\
exit codes:
  0  success
  1  error (the API refused, the VM or image failed, the API cannot be reached)
  2  usage error (bad flags or arguments; nothing was sent)
  3  timeout while waiting (--wait); the work goes on in the background
"""

CONFIG_HELP = """\
configuration (first found wins):
  API URL    --url, else LQ_URL, else http://127.0.0.1:8080
  API token  --token, else LQ_API_TOKEN, else <LQ_DATA_DIR or /var/lib/limiquantix>/api-token
"""

ROOT_EXAMPLES = """\
examples:
  lq vm create web-1 --image debian-12 --cpus 2 --memory 2G --disk 20G \\
      --ssh-key ~/.ssh/id_ed25519.pub --network isolated --wait ready
  lq vm list
  lq vm ssh web-1
  lq events --vm web-1 --since 10m
"""


class Parser(argparse.ArgumentParser):
    """Usage errors as one ``error: … (usage) - …`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message} (usage) - see '{self.prog} --help'\n")
        sys.exit(EXIT_USAGE)


def _connection_options() -> Parser:
    """--url/--token accepted after any command too (SUPPRESS keeps the root's value)."""
    common = Parser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument("--url", default=argparse.SUPPRESS, metavar="URL",
                       help="API URL (default: LQ_URL or http://127.0.0.1:8080)")
    group.add_argument("--token", default=argparse.SUPPRESS, metavar="TOKEN",
                       help="API token (default: LQ_API_TOKEN or the data dir's api-token)")
    return common


class _Builder:
    """Adds leaf commands with a shared style: description, example epilog, connection flags."""

    def __init__(self) -> None:
        self.parents: list[Parser] = [_connection_options()]

    def leaf(self, group: argparse._SubParsersAction[Parser], name: str, handler: Handler,
             summary: str, example: str, *, connection: bool = True) -> Parser:
        parser = group.add_parser(
            name, help=summary, description=summary,
            epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=self.parents if connection else list[Parser](),
        )
        parser.set_defaults(handler=handler)
        return parser


def _group(parent: argparse._SubParsersAction[Parser], name: str, summary: str, example: str
           ) -> argparse._SubParsersAction[Parser]:
    parser = parent.add_parser(name, help=summary, description=summary,
                               epilog=f"example:\n  {example}\n\n{EXIT_CODES}",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(handler=None, help_parser=parser)
    return parser.add_subparsers(title="commands", metavar="COMMAND")


def _wait_options(parser: Parser, default_timeout: str) -> None:
    parser.add_argument("--timeout", default=default_timeout, metavar="DURATION",
                        help=f"give up waiting after this long, exit 3 (default {default_timeout})")


def _wait_flag(parser: Parser, until: str, default_timeout: str) -> None:
    """``--wait`` (follow the work ``until`` ...) and the ``--timeout`` it gives up after."""
    parser.add_argument("--wait", action="store_true", help=until)
    _wait_options(parser, default_timeout)


def _seed_and_windows_options(p: Parser) -> None:
    p.add_argument("--datasource", choices=("nocloud", "configdrive"),
                   help="seed format: NoCloud (default) or an OpenStack config drive (config-2)")
    p.add_argument("--network-config", metavar="FILE",
                   help="cloud-init network-config version 2 (YAML)")
    p.add_argument("--os-type", choices=("linux", "windows"),
                   help="guest OS family (default: from the image's os); windows: UEFI, TPM, "
                        "Hyper-V, >= 2 CPUs, 4G, 64G")
    p.add_argument("--windows", metavar="FILE",
                   help="the windows section as YAML (computer_name, timezone, locale, "
                        "product_key, enable_rdp, enable_winrm, first_logon_commands ...)")
    p.add_argument("--windows-computer-name", metavar="NAME",
                   help="NetBIOS computer name, <= 15 characters (default: the VM name)")
    p.add_argument("--windows-password-prompt", action="store_true",
                   help="ask for the administrator password (stored only sealed for the node)")
    p.add_argument("--windows-timezone", metavar="TZ",
                   help="Windows time zone id, e.g. 'W. Europe Standard Time' (default UTC)")
    p.add_argument("--windows-locale", metavar="LOCALE", help="e.g. de-DE (default en-US)")
    p.add_argument("--windows-product-key", metavar="KEY", help="XXXXX-XXXXX-XXXXX-XXXXX-XXXXX")
    p.add_argument("--windows-winrm", action="store_true", help="enable WinRM (HTTP 5985)")
    p.add_argument("--windows-no-rdp", action="store_true", help="leave RDP off")
    p.add_argument("--windows-secure-boot", action="store_true", help="UEFI Secure Boot")
    p.add_argument("--windows-join-domain", metavar="DOMAIN",
                   help="join this Active Directory domain (e.g. corp.example.com)")
    p.add_argument("--windows-join-user", metavar="USER",
                   help="the account that joins (user, DOMAIN\\user or user@domain); its "
                        "password is prompted for")
    p.add_argument("--windows-join-ou", metavar="OU",
                   help="OU for the computer account, e.g. OU=Servers,DC=corp,DC=example,DC=com")
    p.add_argument("--windows-first-logon", action="append", metavar="COMMAND",
                   help="a command run at first logon; repeatable")


def _vm_commands(b: _Builder, root: argparse._SubParsersAction[Parser]) -> None:
    vm = _group(root, "vm", "Create, drive and reach virtual machines",
                "lq vm create web-1 --image debian-12 --wait running")
    p = b.leaf(vm, "create", commands_vm.create, "Create a VM from an image",
               "lq vm create web-1 --image debian-12 --cpus 2 --memory 2G --disk 20G \\\n"
               "      --user admin --ssh-key ~/.ssh/id_ed25519.pub --network isolated "
               "--wait ready")
    p.add_argument("name", help="VM name (DNS label: a-z, 0-9, '-')")
    p.add_argument("--image",
                   help="image id or name (lq image list; a catalog image downloads on first "
                        "use), or a node path inside LQ_HOST_IMAGE_DIRS; omitted: a blank disk "
                        "and no cloud-init")
    p.add_argument("--cpus", type=int, help="vCPUs (API default 1)")
    p.add_argument("--memory", metavar="SIZE", help="memory, e.g. 2G, 2048M, 512MiB (bare: MiB)")
    p.add_argument("--disk", metavar="SIZE", help="disk, e.g. 20G (bare number: GiB)")
    p.add_argument("--max-cpus", type=int, metavar="N",
                   help="vCPUs the running VM can be hot-plugged up to (default: --cpus)")
    p.add_argument("--max-memory", metavar="SIZE",
                   help="memory the running VM can be hot-plugged up to (default: --memory)")
    p.add_argument("--user", help="login user made by cloud-init (API default admin)")
    p.add_argument("--ssh-key", action="append", metavar="FILE",
                   help="public key file (or a literal key) for the user; repeatable")
    p.add_argument("--password-prompt", action="store_true",
                   help="ask for the user's password (sent once, stored only as a hash)")
    p.add_argument("--ssh-password-auth", action="store_true",
                   help="allow SSH password logins (off by default)")
    p.add_argument("--user-data", metavar="FILE",
                   help="custom #cloud-config (or script), merged with the generated one")
    p.add_argument("--hostname", help="guest host name (default: the VM name)")
    p.add_argument("--no-guest-agent", action="store_true",
                   help="do not install qemu-guest-agent at first boot when the image lacks it")
    p.add_argument("--description", help="free text for people: what the VM is for")
    p.add_argument("--label", action="append", metavar="KEY=VALUE",
                   help="a label to find the VM by (repeat for more)")
    p.add_argument("--network", metavar="MODE",
                   help="none, user, isolated (SSH forward on 127.0.0.1), bridge:BR, network:NET")
    p.add_argument("--node", help="place on this node (default: the API chooses)")
    p.add_argument("--wait", choices=("running", "ready", "ssh"),
                   help="follow the VM until it runs (or cloud-init is done, or SSH answers: "
                        "the readiness phase and time since boot shown), then print how to "
                        "connect")
    _wait_options(p, "15m")
    _seed_and_windows_options(p)

    p = b.leaf(vm, "list", commands_vm.list_vms, "List VMs", "lq vm list --state running")
    p.add_argument("--state", help="only VMs in this state")
    p.add_argument("--node", help="only VMs on this node")
    p.add_argument("--label", action="append", default=[], metavar="KEY[=VALUE]",
                   help="only VMs with this label (repeat: all must match)")
    p.add_argument("--json", action="store_true", help="the records as a JSON array")
    p.add_argument("-q", "--quiet", action="store_true", help="names only")

    p = b.leaf(vm, "show", commands_vm.show, "Show one VM, with how to connect",
               "lq vm show web-1")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("--json", action="store_true", help="the record as JSON")

    for name in (*commands_vm.ACTIONS, "delete"):
        verb = {"force-stop": "Power off", "delete": "Delete (domain and files)",
                "retry": "Retry what failed (create or start) for"}.get(
            name, name.capitalize())
        p = b.leaf(vm, name, commands_vm.action, f"{verb} one or more VMs",
                   f"lq vm {name} web-1 --wait")
        p.add_argument("vms", nargs="+", metavar="NAME|ID")
        p.add_argument("--wait", action="store_true",
                       help="follow each VM until the action is done")
        if name == "delete":
            p.add_argument("--force", action="store_true",
                           help="for a VM whose node is gone: remove it now (the node removes "
                                "its domain and files if it comes back)")
        _wait_options(p, "5m")
        p.set_defaults(action=name)

    p = b.leaf(vm, "console", commands_vm_access.console, "Print (or open) the browser console URL",
               "lq vm console web-1 --open")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("--open", action="store_true", help="open it in a web browser")

    p = b.leaf(vm, "ssh", commands_vm_access.ssh_command,
               "SSH into the VM, checking its host key against the API's fingerprint",
               "lq vm ssh web-1 -- uptime")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("--user", help="log in as this user (default: the VM's cloud-init user)")
    p.add_argument("-i", "--identity", metavar="FILE", help="private key file for ssh")
    p.add_argument("--print", action="store_true", help="print the ssh command, do not run it")
    p.usage = "lq vm ssh [-h] [--user USER] [-i FILE] [--print] NAME|ID [-- COMMAND ...]"
    p.set_defaults(takes_remote=True)

    p = b.leaf(vm, "log", commands_vm_access.log, "Print the VM's serial console log",
               "lq vm log web-1 --follow")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")

    _guest_commands(b, vm)
    _snapshot_commands(b, vm)
    _device_commands(b, vm)


def _guest_commands(b: _Builder, vm: argparse._SubParsersAction[Parser]) -> None:
    """lq vm exec|cp|passwd: through the QEMU guest agent (docs/guest-agent.md)."""
    p = b.leaf(vm, "exec", commands_vm_guest.exec_command,
               "Run a command in the VM through its guest agent (exit code = the command's)",
               "lq vm exec web-1 -- cat /etc/hostname")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("--timeout", type=int, default=30, metavar="SECONDS",
                   help="give up after this many seconds, 1-600 (default 30)")
    p.add_argument("--stdin", action="store_true", help="send this command's stdin to it")
    p.usage = "lq vm exec [-h] [--timeout SECONDS] [--stdin] NAME|ID -- COMMAND [ARG ...]"
    p.set_defaults(takes_remote=True)

    p = b.leaf(vm, "cp", commands_vm_guest.copy,
               "Copy a file into or out of the VM through its guest agent",
               "lq vm cp app.conf web-1:/etc/app.conf --mode 0644   (or: lq vm cp "
               "web-1:/var/log/syslog .)")
    p.add_argument("source", metavar="SRC", help="FILE, - (stdin) or NAME:/path")
    p.add_argument("target", metavar="DEST", help="NAME:/path, or FILE, DIR or - (stdout)")
    p.add_argument("--mode", default="", help="octal mode of the file written in the guest")
    p.add_argument("--owner", default="", help="user[:group] of the file written in the guest")

    p = b.leaf(vm, "passwd", commands_vm_guest.passwd,
               "Set a guest user's password through the guest agent",
               "lq vm passwd web-1 admin")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("user", metavar="USER")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin (no prompt)")


def _snapshot_commands(b: _Builder, vm: argparse._SubParsersAction[Parser]) -> None:
    """lq vm snapshot create|list|revert|delete, lq vm clone, lq vm publish (docs/day2.md)."""
    snap = _group(vm, "snapshot", "Snapshots of a VM's disk (and memory)",
                  "lq vm snapshot create web-1 before-upgrade --memory --wait")
    p = b.leaf(snap, "create", commands_snapshot.create, "Take a snapshot",
               "lq vm snapshot create web-1 before-upgrade --memory --wait")
    p.add_argument("vm", metavar="VM")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description", default="", help="free text for people")
    p.add_argument("--memory", action="store_true",
                   help="running VM: RAM and devices too (a revert resumes it where it was)")
    _wait_flag(p, "until the snapshot is ready", "10m")
    p = b.leaf(snap, "list", commands_snapshot.list_snapshots, "List a VM's snapshots",
               "lq vm snapshot list web-1")
    p.add_argument("vm", metavar="VM")
    p.add_argument("--json", action="store_true", help="the snapshots as a JSON array")
    for name, handler, summary in (
            ("revert", commands_snapshot.revert, "Revert the VM to a snapshot"),
            ("delete", commands_snapshot.delete, "Delete a snapshot")):
        p = b.leaf(snap, name, handler, summary, f"lq vm snapshot {name} web-1 before-upgrade")
        p.add_argument("vm", metavar="VM")
        p.add_argument("snapshot", metavar="SNAPSHOT", help="name or id")
        _wait_flag(p, "until it is done", "10m")

    p = b.leaf(vm, "clone", commands_snapshot.clone,
               "Clone a VM (new id, MAC, hostname; cloud-init runs as a new instance)",
               "lq vm clone web-1 web-2 --snapshot before-upgrade --wait running")
    p.add_argument("source", metavar="SRC")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--snapshot", help="clone at this snapshot (default: the current disk)")
    _yes_no(p, "linked", ("--linked", "an overlay over a frozen base (instant; the default "
                                      "for a template): the template's disk, or the "
                                      "snapshot's base, written once on the node; without "
                                      "--snapshot a VM is snapshotted now (clone-NAME), and "
                                      "that snapshot stays while the clone exists"),
            ("--full", "a full, flattened copy (the default for a VM that is not a template)"))
    p.add_argument("--description", default="", help="free text for people")
    p.add_argument("--wait", nargs="?", const="running", choices=("running", "ready"),
                   help="until the clone runs (or is ready: cloud-init done)")
    _wait_options(p, "15m")

    p = b.leaf(vm, "publish", commands_snapshot.publish,
               "Publish a VM's disk as a new image (a template), with progress",
               "lq vm publish web-1 web-template")
    p.add_argument("vm", metavar="VM")
    p.add_argument("image_name", metavar="IMAGE_NAME")
    p.add_argument("--snapshot", help="publish this snapshot (default: the current disk)")
    _yes_no(p, "generalize", ("--generalize", "clean the guest's identity through its agent "
                              "(cloud-init clean, machine-id, SSH host keys), then shut it "
                              "down (the default when it runs with its agent)"),
            ("--no-generalize", "publish the disk as it is"))
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="return once the publish is queued")
    _wait_options(p, "1h")

    p = b.leaf(vm, "template", commands_snapshot.template,
               "Make a stopped VM a template: frozen, the base of instant linked clones",
               "lq vm template web-1 && lq vm clone web-1 web-2 --wait")
    p.add_argument("vm", metavar="VM")


def _yes_no(p: Parser, dest: str, yes: tuple[str, str], no: tuple[str, str]) -> None:
    """Two opposite flags (option, help) setting ``dest`` True or False; neither: None, the
    API's default."""
    either = p.add_mutually_exclusive_group()
    either.add_argument(yes[0], dest=dest, action="store_true", default=None, help=yes[1])
    either.add_argument(no[0], dest=dest, action="store_false", help=no[1])


def _device_commands(b: _Builder, vm: argparse._SubParsersAction[Parser]) -> None:
    """lq vm resize, lq vm disk add|list|remove, lq vm media insert|eject (docs/day2.md)."""
    p = b.leaf(vm, "resize", commands_devices.resize,
               "Resize a VM: at the next start when stopped, live (up to its maxima) when running",
               "lq vm resize web-1 --vcpus 2 --memory 1536M --disk 20G --wait")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("--vcpus", "--cpus", type=int, help="vCPUs")
    p.add_argument("--memory", metavar="SIZE", help="memory, e.g. 1536M, 2G (bare: MiB)")
    p.add_argument("--disk", metavar="SIZE", help="system disk, e.g. 20G; grows only")
    p.add_argument("--max-vcpus", type=int, help="hot-plug ceiling (stopped VMs only)")
    p.add_argument("--max-memory", metavar="SIZE", help="hot-plug ceiling (stopped VMs only)")
    _device_wait(p)

    disk = _group(vm, "disk", "Extra disks of a VM", "lq vm disk add web-1 data 10G --wait")
    p = b.leaf(disk, "add", commands_devices.disk_add,
               "Add an empty extra disk (attached live when the VM runs)",
               "lq vm disk add web-1 data 10G --wait")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("name", metavar="DISK")
    p.add_argument("size", metavar="SIZE", help="e.g. 10G (bare number: GiB)")
    _device_wait(p)
    p = b.leaf(disk, "list", commands_devices.disk_list, "List a VM's extra disks",
               "lq vm disk list web-1")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("--json", action="store_true", help="the disks as a JSON array")
    p = b.leaf(disk, "remove", commands_devices.disk_remove,
               "Detach an extra disk and delete it", "lq vm disk remove web-1 data --wait")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("disk", metavar="DISK", help="name or id")
    _device_wait(p)

    media = _group(vm, "media", "The VM's CD-ROM media drive (ISOs from the library)",
                   "lq vm media insert web-1 tools.iso --wait")
    p = b.leaf(media, "insert", commands_devices.media_insert,
               "Insert an ISO from the library (replaces what is in the drive)",
               "lq vm media insert web-1 tools.iso --wait")
    p.add_argument("vm", metavar="NAME|ID")
    p.add_argument("image", metavar="IMAGE", help="ISO image id or name (`lq image list`)")
    _device_wait(p)
    p = b.leaf(media, "eject", commands_devices.media_eject, "Empty the media drive",
               "lq vm media eject web-1")
    p.add_argument("vm", metavar="NAME|ID")
    _device_wait(p)


def _device_wait(p: Parser) -> None:
    _wait_flag(p, "until the node reports it done", "5m")


def _image_commands(b: _Builder, root: argparse._SubParsersAction[Parser]) -> None:
    image = _group(root, "image", "Cloud images and ISOs in the image library",
                   "lq image import debian-12")
    p = b.leaf(image, "list", commands_image.list_images, "List images (catalog included)",
               "lq image list --state active")
    p.add_argument("--state", help="only images in this state")
    p.add_argument("--format", help="qcow2, raw or iso")
    p.add_argument("--os", help="e.g. debian, ubuntu")
    p.add_argument("--json", action="store_true", help="the records as a JSON array")
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")

    p = b.leaf(image, "show", commands_image.show, "Show one image", "lq image show debian-12")
    p.add_argument("image", metavar="ID|NAME")
    p.add_argument("--json", action="store_true", help="the record as JSON")

    p = b.leaf(image, "import", commands_image.import_image,
               "Import an image from a URL or a catalog entry, with a progress bar",
               "lq image import https://example.org/disk.qcow2 --sha256 9f86d08...")
    p.add_argument("source", metavar="URL|CATALOG-ID")
    p.add_argument("--sha256", help="expected checksum; a mismatch fails the import")
    p.add_argument("--name", help="image name (default: the URL's file name)")
    p.add_argument("--mirror", metavar="URL", help="fetch a catalog entry from this URL instead")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="return once the import is queued")
    _wait_options(p, "1h")

    p = b.leaf(image, "upload", commands_image.upload, "Upload a local image file (streamed)",
               "lq image upload ./disk.qcow2 --name my-image")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", help="image name (default: the file name)")
    p.add_argument("--sha256", help="expected checksum, checked by the library")
    p.add_argument("--format", choices=("qcow2", "raw", "iso"),
                   help="claimed format (inspection decides)")
    p.add_argument("--os", help="operating system, e.g. debian")
    p.add_argument("--version", help="OS version, e.g. 12")
    p.add_argument("--default-user", help="the image's default login user")

    p = b.leaf(image, "delete", commands_image.delete, "Delete images (refused while VMs use them)",
               "lq image delete my-image")
    p.add_argument("images", nargs="+", metavar="ID|NAME")


def _token_commands(b: _Builder, root: argparse._SubParsersAction[Parser]) -> None:
    token = _group(root, "token", "Named API tokens and their roles (admin)",
                   "lq token create ci-bot --role operator")
    p = b.leaf(token, "create", commands_token.create,
               "Create a token; it is printed once, on stdout",
               "lq token create ci-bot --role operator")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", choices=("admin", "operator", "viewer"), default="viewer",
                   help="admin: everything; operator: VMs and images; viewer: read only "
                        "(default)")
    p.add_argument("--json", action="store_true", help="the answer as JSON (token included)")
    p = b.leaf(token, "list", commands_token.list_tokens, "List tokens (never their secrets)",
               "lq token list")
    p.add_argument("--json", action="store_true", help="as a JSON array")
    p = b.leaf(token, "delete", commands_token.delete, "Delete tokens; they stop working at once",
               "lq token delete ci-bot")
    p.add_argument("tokens", nargs="+", metavar="ID|NAME")


def _webhook_commands(b: _Builder, root: argparse._SubParsersAction[Parser]) -> None:
    hook = _group(root, "webhook", "Webhooks: events POSTed to a URL, signed (docs/webhooks.md)",
                  "lq webhook create https://hooks.example.com/lq --events 'vm.*'")
    p = b.leaf(hook, "create", commands_webhook.create,
               "Create a webhook; a generated secret is printed once, on stdout",
               "lq webhook create https://hooks.example.com/lq --events 'vm.*' node.state_changed")
    # Not "url": that is the global --url (the API's), accepted after the command too.
    p.add_argument("receiver_url", metavar="URL")
    p.add_argument("--events", nargs="+", metavar="TYPE",
                   help="event types (vm.state_changed), categories (vm.*) or '*' (default)")
    p.add_argument("--secret-file", metavar="FILE",
                   help="read the signing secret from FILE (else LQ_WEBHOOK_SECRET, else a new "
                        "one is generated and printed)")
    p.add_argument("--json", action="store_true", help="the answer as JSON")
    p = b.leaf(hook, "list", commands_webhook.list_webhooks, "List webhooks (no secrets)",
               "lq webhook list")
    p.add_argument("--json", action="store_true", help="as a JSON array")
    for name, handler, text in (
            ("show", commands_webhook.show, "Show one webhook"),
            ("test", commands_webhook.test, "Deliver a webhook.test event now (exit 1 if not "
                                            "taken)"),
            ("deliveries", commands_webhook.deliveries, "The last delivery attempts, newest "
                                                        "first")):
        p = b.leaf(hook, name, handler, text, f"lq webhook {name} ID")
        p.add_argument("webhook", metavar="ID")
        p.add_argument("--json", action="store_true", help="as JSON")
    p = b.leaf(hook, "delete", commands_webhook.delete, "Delete webhooks", "lq webhook delete ID")
    p.add_argument("webhooks", nargs="+", metavar="ID")


def _other_commands(b: _Builder, root: argparse._SubParsersAction[Parser]) -> None:
    node = _group(root, "node", "Hypervisor nodes", "lq node list")
    p = b.leaf(node, "list", commands_node.list_nodes, "List nodes with capacity and liveness",
               "lq node list")
    p.add_argument("--json", action="store_true", help="as a JSON array")
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")
    p = b.leaf(node, "show", commands_node.show, "Show one node", "lq node show node-a")
    p.add_argument("node", metavar="ID")
    p.add_argument("--json", action="store_true", help="as JSON")

    p = b.leaf(root, "events", commands_events.events,
               "Follow the event stream, one line per event", "lq events --vm web-1 --since 10m")
    p.add_argument("--vm", metavar="NAME|ID", help="only this VM's events")
    p.add_argument("--since", metavar="DURATION", help="replay from this long ago (e.g. 10m, 2h)")
    p.add_argument("--after", metavar="EVENT-ID", help="resume after this event id")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--limit", type=int, metavar="N", help="stop after N events")

    p = b.leaf(root, "completion", completion.command, "Print a shell completion script",
               'eval "$(lq completion bash)"   # or, in ~/.zshrc: eval "$(lq completion zsh)"',
               connection=False)
    p.add_argument("shell", choices=("bash", "zsh"))


def build_parser() -> Parser:
    parser = Parser(
        prog="lq", description="Limiquantix command-line client (talks to the HTTP API).",
        epilog=f"{ROOT_EXAMPLES}\n{CONFIG_HELP}\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", metavar="URL", help="API URL (default: LQ_URL or local)")
    parser.add_argument("--token", metavar="TOKEN",
                        help="API token (default: LQ_API_TOKEN or the data dir's api-token)")
    parser.add_argument("--version", action="version", version=f"lq {__version__}")
    parser.set_defaults(handler=None, help_parser=parser)
    root = parser.add_subparsers(title="commands", metavar="COMMAND")
    builder = _Builder()
    _vm_commands(builder, root)
    _image_commands(builder, root)
    _token_commands(builder, root)
    _webhook_commands(builder, root)
    _other_commands(builder, root)
    return parser


def run(argv: Sequence[str] | None = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Parse, run one command, turn errors into one line and an exit code."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is a command for the VM (lq vm ssh), not ours to parse.
    split = words.index("--") if "--" in words else len(words)
    args = parser.parse_args(words[:split])
    args.remote = words[split + 1:]
    if args.remote and not getattr(args, "takes_remote", False):
        parser.error(f"unexpected arguments after --: {' '.join(args.remote)}")
    ctx = Context(args, out or sys.stdout, err or sys.stderr)
    if args.handler is None:  # "lq" or "lq vm" alone
        args.help_parser.print_help(ctx.err)
        return EXIT_USAGE
    try:
        return int(args.handler(ctx))
    except CliError as exc:
        ctx.err.write(exc.line() + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        ctx.err.write("\ninterrupted (anything already requested goes on)\n")
        return 130
    except BrokenPipeError:  # `lq events | head`: the reader chose to stop; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def main() -> None:
    sys.exit(run())
