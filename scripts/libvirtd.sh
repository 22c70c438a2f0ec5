#!/usr/bin/env bash
# Starts virtlogd and libvirtd when they are not running (machines without systemd).
# Prints "started" when this call started libvirtd, so the caller may stop it (by PID) later.
set -euo pipefail
sock=/var/run/libvirt/libvirt-sock
if pgrep -x libvirtd >/dev/null && [ -S "$sock" ]; then echo "running"; exit 0; fi
pgrep -x virtlogd >/dev/null || virtlogd -d
libvirtd -d
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "libvirtd did not create $sock; see /var/log/libvirt/libvirtd.log" >&2; exit 1; }
echo "started"
