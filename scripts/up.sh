#!/usr/bin/env bash
# One command: install everything, then run the whole system on this machine (embedded NATS with
# JetStream, libvirtd, image library, node agent, API on 127.0.0.1:8080). Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/libvirtd.sh >/dev/null
exec .venv/bin/lq-local "$@"
