"""Build a small bootable Debian 12 cloud image offline (from the apt mirror), cached by recipe.

    python -m tests.support.guest_image            # build or reuse; prints the qcow2 path
    python -m tests.support.guest_image --force    # rebuild even when cached

What it makes is what real cloud images are: an MBR disk with one ext4 partition and GRUB in the
MBR gap, ``console=ttyS0`` last on the kernel command line (so cloud-init's output reaches the
serial log), cloud-init restricted to the NoCloud and ConfigDrive datasources, no SSH host keys
and an empty machine-id (each VM makes its own). debootstrap runs in two phases: minbase with
systemd-sysv and udev, then ``apt-get install`` inside the chroot. Partitions are addressed with
``losetup -o OFFSET`` because this machine has no udev to create ``/dev/loopNp1``.

The result is cached under ``/var/cache/limiquantix-test/<recipe hash>/debian12.qcow2`` (outside
the clone, so CI and later runs reuse it). Every loop device and mount made here is released on
every exit path. Needs root, debootstrap, qemu-img and network access to the configured mirror.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("LQ_TEST_IMAGE_CACHE", "/var/cache/limiquantix-test"))
IMAGE_NAME = "debian12.qcow2"
SECTOR = 512
PARTITION_START = 2048  # sectors: 1 MiB, leaves the MBR gap for GRUB's core.img
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")

# Everything that changes the image is in here; its hash names the cache directory.
RECIPE: dict[str, object] = {
    "revision": 3,
    "suite": "bookworm",
    "phase1_include": ["systemd-sysv", "udev"],
    "packages": [
        "linux-image-amd64", "grub-pc-bin", "grub2-common", "cloud-init",
        "openssh-server", "qemu-guest-agent", "dbus", "sudo", "ifupdown", "isc-dhcp-client",
        "iproute2", "locales", "cloud-guest-utils", "fdisk", "e2fsprogs", "netbase",
    ],
    "disk_mib": 2048,
    "cmdline": "ro net.ifnames=0 console=tty0 console=ttyS0,115200n8",
    # ConfigDrive: the OpenStack seed format (label config-2), issue 18.
    "datasource_list": ["NoCloud", "ConfigDrive", "None"],
    # Under TCG every second of boot is CPU the tests wait for (each guest test boots at least
    # once). What a throw-away test guest never needs is left out (measured with systemd-analyze
    # blame and cloud-init analyze blame in the guest):
    # - cloud-init modules for other distros, package mirrors and config tools (grub-dpkg and
    #   apt-configure alone were ~7 s of the config stage); the rest run as on a cloud image;
    "cloud_init_modules": [
        "migrator", "seed_random", "bootcmd", "write-files", "growpart", "resizefs",
        "disk_setup", "mounts", "set_hostname", "update_hostname", "update_etc_hosts",
        "ca-certs", "rsyslog", "users-groups", "ssh",
    ],
    "cloud_config_modules": ["locale", "set-passwords", "ntp", "timezone", "runcmd"],
    "cloud_final_modules": [
        "package-update-upgrade-install", "write-files-deferred", "scripts-vendor",
        "scripts-per-once", "scripts-per-boot", "scripts-per-instance", "scripts-user",
        "ssh-authkey-fingerprints", "keys-to-console", "phone-home", "final-message",
        "power-state-change",
    ],
    # - periodic jobs and e2scrub_reap (~20 s of the single vCPU at boot under load);
    "masked_units": [
        "e2scrub_reap.service", "e2scrub_all.timer", "apt-daily.timer",
        "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "fstrim.timer",
    ],
    # - the locale cloud-init sets (C.UTF-8, the API's default) already in place, so its locale
    #   module does not run update-locale at first boot;
    "default_locale": "C.UTF-8",
    # - an initrd with only what mounts the root file system (virtio or SCSI/SATA disk, ext4)
    #   and shows the seed's CD-ROM (cloud-init's generator looks for it before udev runs in
    #   the root file system: without sr_mod, no datasource, and cloud-init stays off) instead
    #   of MODULES=most (35 MB to unpack under TCG at every boot).
    "initrd_modules": [
        "virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "ahci", "sr_mod", "ext4",
        "crc32c_generic",
    ],
    "mkfs_features": "^metadata_csum_seed,^orphan_file",
    # Module trees a VM never needs, dropped to keep the image and its initrd small (the
    # cloud kernel would be smaller still, but it has no AHCI for the SATA seed CD-ROM).
    "prune_modules": [
        "drivers/gpu/drm/amd", "drivers/gpu/drm/radeon", "drivers/gpu/drm/nouveau",
        "drivers/gpu/drm/i915", "drivers/gpu/drm/xe", "drivers/net/wireless", "drivers/media",
        "drivers/infiniband", "drivers/staging", "drivers/bluetooth", "drivers/isdn",
        "drivers/iio", "drivers/usb/gadget", "sound", "net/wireless",
        "net/mac80211", "net/bluetooth",
    ],
}


class BuildFailed(RuntimeError):
    """A build step failed; the message holds the command and its stderr."""


def log(message: str) -> None:
    print(f"[build_image {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(args: Sequence[str], *, timeout_s: float = 600, env: dict[str, str] | None = None,
        input_text: str | None = None) -> str:
    """Run a tool; raise BuildFailed with its stderr when it fails or times out."""
    try:
        done = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout_s, input=input_text,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        raise BuildFailed(f"{' '.join(args)} took longer than {timeout_s:g} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-3000:]
        raise BuildFailed(f"{' '.join(args)} exited {done.returncode}: {tail}")
    return done.stdout


def mirror_url() -> str:
    """The Debian mirror apt is configured with (deb822 sources), so the build stays offline."""
    if APT_SOURCES.exists():
        for line in APT_SOURCES.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split(None, 1)[1].strip().split()[0]
    return "http://deb.debian.org/debian"


def recipe() -> dict[str, object]:
    return {**RECIPE, "mirror": mirror_url()}


def recipe_hash(spec: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def cached_image_path() -> Path:
    """Where the image for the current recipe lives (whether or not it is built yet)."""
    return CACHE_ROOT / recipe_hash(recipe()) / IMAGE_NAME


def write_mbr(disk: Path, total_sectors: int) -> None:
    """One bootable Linux partition from PARTITION_START to the end (no sfdisk needed)."""
    count = total_sectors - PARTITION_START
    entry = bytes([0x80, 0xFE, 0xFF, 0xFF, 0x83, 0xFE, 0xFF, 0xFF])
    entry += PARTITION_START.to_bytes(4, "little") + count.to_bytes(4, "little")
    with disk.open("r+b") as f:
        f.seek(440)
        f.write(os.urandom(4) + b"\0\0")  # disk signature
        f.write(entry + bytes(16 * 3))
        f.write(b"\x55\xaa")


class Mounts:
    """Loop devices and mounts made by the build, released in reverse order on exit."""

    def __init__(self) -> None:
        self._undo: list[list[str]] = []

    def loop(self, path: Path, *, offset: int = 0, size: int | None = None) -> str:
        args = ["losetup", "--find", "--show"]
        if offset:
            args += ["--offset", str(offset)]
        if size:
            args += ["--sizelimit", str(size)]
        device = run([*args, str(path)]).strip()
        self._undo.append(["losetup", "--detach", device])
        return device

    def mount(self, source: str, target: Path, *options: str) -> None:
        target.mkdir(parents=True, exist_ok=True)
        run(["mount", *options, source, str(target)])
        self._undo.append(["umount", str(target)])

    def release(self) -> None:
        errors: list[str] = []
        while self._undo:
            args = self._undo.pop()
            for attempt in range(5):
                try:
                    run(args, timeout_s=60)
                    break
                except BuildFailed as exc:
                    if attempt == 4:
                        errors.append(str(exc))
                    time.sleep(0.5)
        if errors:
            raise BuildFailed("clean-up failed: " + "; ".join(errors))


@contextlib.contextmanager
def mounts() -> Iterator[Mounts]:
    m = Mounts()
    try:
        yield m
    finally:
        m.release()


@contextlib.contextmanager
def chroot_mounts(root: Path) -> Iterator[None]:
    """/proc, /sys and /dev inside ``root`` for apt and grub-install; removed afterwards."""
    inner = Mounts()
    try:
        inner.mount("proc", root / "proc", "-t", "proc")
        inner.mount("sysfs", root / "sys", "-t", "sysfs")
        inner.mount("/dev", root / "dev", "--bind")
        inner.mount("devpts", root / "dev/pts", "-t", "devpts")
        yield
    finally:
        inner.release()


CHROOT_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C.UTF-8",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}


def in_chroot(root: Path, *args: str, timeout_s: float = 1200) -> str:
    return run(["chroot", str(root), *args], timeout_s=timeout_s, env=CHROOT_ENV)


def debootstrap(root: Path, spec: dict[str, object], debs: Path) -> None:
    """Phase 1: minbase with systemd as init and udev (the rest needs a working apt)."""
    include = ",".join(spec["phase1_include"])  # type: ignore[arg-type]
    debs.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap {spec['suite']} from {spec['mirror']}")
    run(["debootstrap", "--variant=minbase", f"--include={include}", f"--cache-dir={debs}",
         str(spec["suite"]), str(root), str(spec["mirror"])], timeout_s=1800)


def install_packages(root: Path, spec: dict[str, object]) -> None:
    """Phase 2: apt-get install in the chroot, with services kept from starting."""
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    (root / "etc/kernel-img.conf").write_text("do_symlinks = yes\nlink_in_boot = yes\n")
    packages = [str(p) for p in spec["packages"]]  # type: ignore[attr-defined]
    log(f"apt-get install {' '.join(packages)}")
    in_chroot(root, "apt-get", "update", "-q")
    in_chroot(root, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages)
    in_chroot(root, "apt-get", "clean")
    policy.unlink()
    units = [str(u) for u in spec["masked_units"]]  # type: ignore[attr-defined]
    in_chroot(root, "systemctl", "disable", *units)
    in_chroot(root, "systemctl", "mask", *units)
    prune_modules(root, spec)


def prune_modules(root: Path, spec: dict[str, object]) -> None:
    """Drop module trees no VM uses, then rebuild the module index and the initrd (with only
    the modules that mount the root file system)."""
    (root / "etc/initramfs-tools/conf.d/limiquantix.conf").write_text("MODULES=list\n")
    (root / "etc/initramfs-tools/modules").write_text(
        "".join(f"{name}\n" for name in spec["initrd_modules"]))  # type: ignore[attr-defined]
    for kernel_dir in (root / "lib/modules").iterdir():
        for rel in spec["prune_modules"]:  # type: ignore[attr-defined]
            shutil.rmtree(kernel_dir / "kernel" / str(rel), ignore_errors=True)
        in_chroot(root, "depmod", "-a", kernel_dir.name)
    in_chroot(root, "update-initramfs", "-u", "-k", "all")


def configure(root: Path, spec: dict[str, object], fs_uuid: str) -> None:
    """Files that make the tree a cloud image: fstab, cloud-init, network, GRUB, first boot."""
    (root / "etc/fstab").write_text(f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    sources = list(spec["datasource_list"])  # type: ignore[call-overload]
    stages = "".join(
        f"{stage}: [{', '.join(str(m) for m in spec[stage])}]\n"  # type: ignore[attr-defined]
        for stage in ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules"))
    (root / "etc/cloud/cloud.cfg.d/90_limiquantix.cfg").write_text(
        f"datasource_list: [{', '.join(sources)}]\n{stages}"
    )
    (root / "etc/default/locale").write_text(f"LANG={spec['default_locale']}\n")
    # ifupdown reads cloud-init's rendered file from interfaces.d; loopback stays here.
    (root / "etc/network/interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n"
    )
    (root / "etc/network/interfaces.d").mkdir(exist_ok=True)
    # Kept for anyone running update-grub in the guest: console=ttyS0 stays last.
    (root / "etc/default/grub").write_text(
        "GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR=Debian\n"
        f'GRUB_CMDLINE_LINUX_DEFAULT=""\nGRUB_CMDLINE_LINUX="{spec["cmdline"]}"\n'
        "GRUB_TERMINAL=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n"
    )
    # Each VM generates its own host keys and machine-id on first boot.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    shutil.rmtree(root / "var/lib/cloud", ignore_errors=True)
    for stale in (root / "var/lib/apt/lists").glob("*_dists_*"):
        stale.unlink()
    check_kernel(root)


def check_kernel(root: Path) -> None:
    """The kernel must read the seed ISO on a SATA CD-ROM and the virtio disk and NIC."""
    configs = sorted((root / "boot").glob("config-*"))
    if not configs:
        raise BuildFailed("no kernel installed in /boot")
    text = configs[-1].read_text()
    for option in ("CONFIG_ISO9660_FS", "CONFIG_SATA_AHCI", "CONFIG_VIRTIO_BLK",
                   "CONFIG_VIRTIO_NET", "CONFIG_SERIAL_8250_CONSOLE"):
        if not re.search(rf"^{option}=[ym]$", text, re.M):
            raise BuildFailed(f"the kernel in the image lacks {option}")


def grub_cfg(root: Path, spec: dict[str, object], fs_uuid: str) -> str:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    version = kernels[-1].name.removeprefix("vmlinuz-")
    return (
        "serial --speed=115200\nterminal_input console serial\nterminal_output console serial\n"
        "set timeout=0\ninsmod part_msdos\ninsmod ext2\n"
        f"search --no-floppy --fs-uuid --set=root {fs_uuid}\n"
        "menuentry 'Debian GNU/Linux' {\n"
        f"  linux /boot/vmlinuz-{version} root=UUID={fs_uuid} {spec['cmdline']}\n"
        f"  initrd /boot/initrd.img-{version}\n"
        "}\n"
    )


def install_grub(root: Path, disk_device: str, spec: dict[str, object], fs_uuid: str) -> None:
    """GRUB for BIOS into the whole-disk loop device; it finds / by the file system's UUID."""
    grub_dir = root / "boot/grub"
    grub_dir.mkdir(parents=True, exist_ok=True)
    (grub_dir / "grub.cfg").write_text(grub_cfg(root, spec, fs_uuid))
    log(f"grub-install {disk_device}")
    in_chroot(root, "grub-install", "--target=i386-pc", "--boot-directory=/boot",
              "--modules=part_msdos ext2 search_fs_uuid biosdisk", "--no-floppy", "--force",
              disk_device, timeout_s=300)


def copy_tree(source: Path, target: Path) -> None:
    run(["cp", "-a", "--one-file-system", f"{source}/.", str(target)], timeout_s=900)


def release_stale(work: Path) -> None:
    """Mounts and loop devices left under ``work`` by a build that was killed (SIGKILL)."""
    mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
               if line.split()[1].startswith(f"{work}/")]
    for target in sorted(mounted, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, timeout=60)
    raw = work / "disk.raw"
    if raw.exists():
        listed = subprocess.run(["losetup", "-j", str(raw)], capture_output=True, text=True,
                                timeout=60).stdout
        for line in listed.splitlines():
            subprocess.run(["losetup", "-d", line.split(":", 1)[0]], capture_output=True,
                           timeout=60)


def build(output: Path) -> None:
    """Build the image into ``output`` (atomically: a partial image is never left there)."""
    spec = recipe()
    work = output.parent / "work"
    release_stale(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        tree = work / "tree"
        debootstrap(tree, spec, CACHE_ROOT / "debs")
        with chroot_mounts(tree):
            install_packages(tree, spec)
        raw = work / "disk.raw"
        size = int(spec["disk_mib"]) * 1024 * 1024  # type: ignore[call-overload]
        with raw.open("wb") as f:
            f.truncate(size)
        write_mbr(raw, size // SECTOR)
        fs_uuid = str(uuid.uuid4())
        offset = PARTITION_START * SECTOR
        with mounts() as m:
            disk_dev = m.loop(raw)
            part_dev = m.loop(raw, offset=offset, size=size - offset)
            run(["mkfs.ext4", "-q", "-L", "root", "-U", fs_uuid, "-O",
                 str(spec["mkfs_features"]), part_dev])
            mnt = work / "mnt"
            m.mount(part_dev, mnt)
            log("copying the tree into the disk")
            copy_tree(tree, mnt)
            configure(mnt, spec, fs_uuid)
            with chroot_mounts(mnt):
                install_grub(mnt, disk_dev, spec, fs_uuid)
            run(["sync"])
        log("qemu-img convert -c -O qcow2")
        partial = output.with_suffix(".partial")
        run(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(partial)],
            timeout_s=1200)
        partial.chmod(0o644)
        partial.rename(output)
        (output.parent / "recipe.json").write_text(json.dumps(spec, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_image(*, force: bool = False) -> Path:
    """The cached image for the current recipe, built first if missing (one builder at a time)."""
    output = cached_image_path()
    output.parent.mkdir(parents=True, exist_ok=True)
    # QEMU runs as libvirt-qemu: every directory on the way must be traversable.
    for directory in (CACHE_ROOT, output.parent):
        directory.chmod(0o755)
    with (output.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if output.exists() and not force:
            return output
        if output.exists():
            output.unlink()
        started = time.monotonic()
        build(output)
        log(f"built {output} ({output.stat().st_size / 2**20:.0f} MiB) "
            f"in {time.monotonic() - started:.0f} s")
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument("--print-path", action="store_true",
                        help="print where the image for this recipe lives and exit")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks release mounts and loop devices.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.print_path:
        print(cached_image_path())
        return 0
    try:
        print(ensure_image(force=args.force))
    except BuildFailed as exc:
        log(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
