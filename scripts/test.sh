#!/usr/bin/env bash
# One command: install everything, then run the whole test suite (unit, integration on real NATS
# and libvirt's test driver, end to end on libvirtd + QEMU/TCG, the real guest, the browser).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
state=$(bash scripts/libvirtd.sh)
stop_libvirtd() {
  # Only the libvirtd this script started is stopped, by its PID.
  if [ "$state" = started ] && [ -f /var/run/libvirtd.pid ]; then kill "$(cat /var/run/libvirtd.pid)" 2>/dev/null || true; fi
}
trap stop_libvirtd EXIT
.venv/bin/python -m pytest -p no:cacheprovider "$@"
