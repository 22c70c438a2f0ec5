#!/usr/bin/env bash
# One command: install everything, then run the whole test suite (unit, integration on real NATS
# and libvirt's test driver, end to end on libvirtd + QEMU/TCG, the real guest, the browser).
#
# --quick: the inner loop, everything but the tests marked stack, e2e, guest, browser, fuzz,
# cluster or build, in 4 parallel workers (the tests mostly wait on NATS and subprocesses: with 3
# the 2 cores were 63 % busy; 4 measured 82-84 s against 89-102 s, back to back; see README, Tests).
set -euo pipefail
cd "$(dirname "$0")/.."
# The whole suite, in two phases: everything that does not boot QEMU in 3 parallel workers, then
# the tests that do (marks e2e, guest) in two lanes with nothing else running (a TCG guest needs
# a core of its own: next to 3 busy workers its boot took 7 minutes instead of one, past the
# tests' limits; two guests side by side on 2 cores took 13 min for what took ~25 one after
# another). Pytest arguments that select tests (paths, -k, -m, ...) make it one run in 3
# workers, each test file kept on one worker (--dist loadfile: a module's tests share its
# guest or stack; with pytest 9, xdist_group marks are ignored, see README, Tests).
workers=(-n 3 --dist loadfile)
phased=1
for arg in "$@"; do
  case "$arg" in -q|-v|-vv|-x|-ra|-rA|--durations=*) ;; *) phased=0 ;; esac
done
if [ "${1:-}" = "--quick" ]; then
  phased=0
  shift
  # worksteal: a worker that ran out of tests takes queued ones from the others, so the run
  # does not end on one worker's tail of slow tests while the other two idle.
  workers=(-n 4 --dist worksteal
           -m "not stack and not e2e and not guest and not browser and not fuzz and not cluster and not build")
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
if [ "$phased" = 0 ]; then
  .venv/bin/python -m pytest -p no:cacheprovider "${workers[@]}" "$@"
  exit
fi
# Both phases run whatever the first one gives; the exit code is the first failure's.
echo "[test] phase 1 of 2: everything but the tests that boot QEMU, in 3 workers" >&2
rc=0
.venv/bin/python -m pytest -p no:cacheprovider -n 3 -m "not e2e and not guest" "$@" || rc=$?
# Phase 2 in two lanes, one real guest each (a TCG guest is one vCPU thread: two fit two cores
# when nothing else runs): lane A the guest every door shares (test_shared_guest.py, ~11 min
# alone) and the console tests; lane B the snapshot and config-drive guests and the other QEMU
# domains. Each lane is one pytest, its output prefixed; a module's tests stay in their lane.
echo "[test] phase 2 of 2: the tests that boot QEMU (e2e, guest), in two lanes" >&2
LANE_A=(tests/guest/test_shared_guest.py tests/console tests/ui tests/metrics)
lane() {
  local name=$1; shift
  set -o pipefail
  PYTHONUNBUFFERED=1 .venv/bin/python -m pytest -p no:cacheprovider -m "e2e or guest" "$@" 2>&1 |
    sed -u "s/^/[lane $name] /"
}
lane A "${LANE_A[@]}" "$@" &
lane_a=$!
lane B "${LANE_A[@]/#/--ignore=}" "$@" &
lane_b=$!
for pid in "$lane_a" "$lane_b"; do
  wait "$pid" || { last=$?; [ "$rc" != 0 ] || rc=$last; }
done
exit "$rc"
