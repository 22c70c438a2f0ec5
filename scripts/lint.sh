#!/usr/bin/env bash
# ruff on everything; mypy --strict on libs/ and services/ and cli/. mypy cannot follow
# setuptools' editable finder for our package-dir mapping, so it reads a symlink tree instead.
set -euo pipefail
cd "$(dirname "$0")/.."
shim=build/typeshim/limiquantix
rm -rf build/typeshim && mkdir -p "$shim"
ln -s "$PWD/limiquantix/__init__.py" "$shim/__init__.py"
for pair in common:libs/common api:services/api node_agent:services/node_agent \
            image_library:services/image_library local:services/local cli:cli \
            client:client; do
  ln -s "$PWD/${pair#*:}" "$shim/${pair%%:*}"
done
.venv/bin/ruff check .
MYPYPATH=build/typeshim .venv/bin/mypy --strict -p limiquantix
