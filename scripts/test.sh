#!/usr/bin/env bash
# One command: install everything, then run the whole test suite (unit, integration on real NATS
# and libvirt's test driver, end to end on libvirtd + QEMU/TCG, the real guest, the browser).
#
# --quick: the inner loop, everything but the tests marked stack, e2e, guest, browser, fuzz or
# cluster, in 3 parallel workers (the tests mostly wait on NATS and subprocesses, so a third
# worker fills the gaps; a fourth only added its own start-up; see README, Tests).
set -euo pipefail
cd "$(dirname "$0")/.."
# The whole suite: 3 workers; every test that boots QEMU runs on one of them, one after another
# (tests/conftest.py puts them in one xdist group), the rest share the other two.
workers=(-n 3 --dist loadgroup)
if [ "${1:-}" = "--quick" ]; then
  shift
  workers=(-n 3 -m "not stack and not e2e and not guest and not browser and not fuzz and not cluster")
  # Compiled bytecode kept between runs (outside the tree): with PYTHONDONTWRITEBYTECODE set,
  # each worker and each service a test starts as a process compiled the package from source
  # again, and pytest rewrote every test module's asserts again (~6 s of CPU per worker).
  unset PYTHONDONTWRITEBYTECODE
  export PYTHONPYCACHEPREFIX=/var/tmp/limiquantix-pycache
fi
bash scripts/setup.sh
state=$(bash scripts/libvirtd.sh)
stop_libvirtd() {
  # Only the libvirtd this script started is stopped, by its PID.
  if [ "$state" = started ] && [ -f /var/run/libvirtd.pid ]; then kill "$(cat /var/run/libvirtd.pid)" 2>/dev/null || true; fi
}
trap stop_libvirtd EXIT
.venv/bin/python -m pytest -p no:cacheprovider "${workers[@]}" "$@"
