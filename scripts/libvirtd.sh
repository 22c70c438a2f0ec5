#!/usr/bin/env bash
# Makes libvirt ready for fast creates on a machine without systemd or udev, then starts virtlogd
# and libvirtd when they are not running. Run by both README commands, even when libvirtd runs.
#
# 1. /dev/kvm: without udev the kernel leaves it root:root 0600. libvirt probes QEMU with KVM,
#    then finds its QEMU user (libvirt-qemu, group kvm) cannot open the device and throws the
#    capability cache away on *every* call: each define re-probes QEMU (~48 s). Debian's udev
#    rule makes it root:kvm 0660; we apply the same, once, and say so.
# 2. The first capability probe after libvirtd's first start takes ~2 min; it happens here, with
#    a message, instead of inside the user's first create.
#
# Prints "started" when this call started libvirtd (the caller may stop it by PID), else
# "running". Messages for people go to stderr.
set -euo pipefail
sock=/var/run/libvirt/libvirt-sock
say() { printf '\033[1m[libvirt]\033[0m %s\n' "$*" >&2; }

qemu_user=libvirt-qemu
kvm=/dev/kvm
if [ -e "$kvm" ] && id "$qemu_user" >/dev/null 2>&1 && getent group kvm >/dev/null; then
  # su/runuser would need a login shell; open the device as the QEMU user with setpriv instead.
  if ! setpriv --reuid="$qemu_user" --regid=kvm --init-groups \
       sh -c "exec 3<>$kvm" 2>/dev/null; then
    was=$(stat -c '%U:%G %a' "$kvm")
    chgrp kvm "$kvm"
    chmod 0660 "$kvm"
    say "$kvm was $was; set root:kvm 0660 as Debian's udev rule does (libvirt's QEMU user must open it)"
  fi
fi

# 3. swtpm (the TPM of Windows-shaped domains): libvirt runs swtpm_setup as `tss` when that user
#    exists at libvirtd's start, as root otherwise. A local CA written while it ran as root leaves
#    root-owned files that `tss` cannot lock, and every TPM domain then fails to start. Give the CA
#    directory back to `tss`, as the swtpm-tools package creates it.
ca=/var/lib/swtpm-localca
if [ -d "$ca" ] && id tss >/dev/null 2>&1 && [ -n "$(find "$ca" ! -user tss -print -quit)" ]; then
  chown -R tss:root "$ca"
  say "$ca had files tss does not own; gave them back to tss (libvirt runs swtpm_setup as tss)"
fi

state=running
if ! { pgrep -x libvirtd >/dev/null && [ -S "$sock" ]; }; then
  pgrep -x virtlogd >/dev/null || virtlogd -d
  libvirtd -d
  for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
  [ -S "$sock" ] || { say "libvirtd did not create $sock; see /var/log/libvirt/libvirtd.log"; exit 1; }
  state=started
fi

# Warm the capability cache (a no-op in ~30 ms once it is valid).
caps=/var/cache/libvirt/qemu/capabilities
if ! compgen -G "$caps/*.xml" >/dev/null; then
  say "probing QEMU capabilities (first start only, up to ~2 min)..."
fi
t0=$(date +%s%N)
virsh -q -c qemu:///system domcapabilities --virttype qemu >/dev/null
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ "$ms" -gt 5000 ]; then say "QEMU capabilities probed in $((ms / 1000)) s (cached from now on)"; fi
echo "$state"
