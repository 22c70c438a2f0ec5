#!/usr/bin/env bash
# Installs everything Limiquantix needs on Debian 12 (as root): system packages, the Python
# virtualenv with the package and its test extras, and noVNC's static files. Idempotent: a second
# run only checks. Used by scripts/up.sh and scripts/test.sh; run it alone to prepare a machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

APT_PACKAGES=(
  libvirt-daemon-system libvirt-dev pkg-config gcc
  qemu-system-x86 qemu-utils ovmf genisoimage
  swtpm swtpm-tools  # the TPM 2.0 of Windows-shaped domains (Windows 11 / Server 2022+)
  python3 python3-venv python3-dev
  debootstrap openssh-client
  chromium
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm install noVNC and build the web UI (Node.js >= 18: Debian 12's nodejs is 18);
# a machine that has them (any source) keeps its own.
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's libvirt ships a 'default' NAT network; Limiquantix never starts it (loopback only).
if [ ! -d .venv ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.limiquantix-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "pip install -e .[test]"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[test]"
  touch "$stamp"
fi

# noVNC is served as static ES modules (no bundler); its code is installed, never committed.
# 1.7.0 is the first npm release that ships the ES modules (core/, vendor/); up to 1.6.0 the
# package held only a Babel/CommonJS build (lib/) that a browser cannot import without bundling.
NOVNC_VERSION=1.7.0
novnc_dir=services/api/static/novnc
if [ ! -f "$novnc_dir/core/rfb.js" ] || [ "$(cat "$novnc_dir/VERSION" 2>/dev/null)" != "$NOVNC_VERSION" ]; then
  log "npm install @novnc/novnc@$NOVNC_VERSION"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm install --silent --no-audit --no-fund "@novnc/novnc@$NOVNC_VERSION" >/dev/null)
  pkg="$tmp/node_modules/@novnc/novnc"
  [ -f "$pkg/core/rfb.js" ] || { log "noVNC $NOVNC_VERSION has no core/rfb.js (ES modules)"; exit 1; }
  rm -rf "$novnc_dir"
  mkdir -p "$novnc_dir"
  cp -r "$pkg/core" "$pkg/vendor" "$pkg/LICENSE.txt" "$novnc_dir/"
  echo "$NOVNC_VERSION" >"$novnc_dir/VERSION"
  rm -rf "$tmp"
fi
# The AsyncAPI 3.0 JSON schema tests/metrics/test_asyncapi.py validates our document against:
# the AsyncAPI initiative ships it on npm only (no PyPI package holds the 3.0 schema).
ASYNCAPI_SPECS_VERSION=6.11.1
specs_dir=build/asyncapi-specs
if [ ! -f "$specs_dir/node_modules/@asyncapi/specs/schemas/3.0.0-without-\$id.json" ]; then
  log "npm install @asyncapi/specs@$ASYNCAPI_SPECS_VERSION"
  mkdir -p "$specs_dir"
  (cd "$specs_dir" && npm install --silent --no-audit --no-fund --prefix . \
    "@asyncapi/specs@$ASYNCAPI_SPECS_VERSION" >/dev/null)
fi
# The web UI (web/: TypeScript + React, built by Vite into services/api/static/app, not
# committed); rebuilt only when its sources or lock file changed.
bash web/build.sh
log "ready: $root/.venv"
