#!/usr/bin/env bash
# Builds the web UI into services/api/static/app (served by the gateway at /), only when one of
# its inputs changed since the last build: `npm ci` when the lock file changed, `npm run build`
# when the sources did. Called by scripts/setup.sh and by the UI tests' fixture; a no-op (a few
# milliseconds) when the build is current. Needs Node.js >= 18 and npm.
set -euo pipefail
cd "$(dirname "$0")"
log() { printf '\033[1m[web]\033[0m %s\n' "$*" >&2; }

out=../services/api/static/app
NODE_MIN_MAJOR=18
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "Node.js >= $NODE_MIN_MAJOR and npm are needed to build the web UI (apt-get install nodejs npm)"
  exit 1
fi
node_major=$(node --version | sed -E 's/^v([0-9]+).*/\1/')
if [ "$node_major" -lt "$NODE_MIN_MAJOR" ]; then
  log "Node.js $(node --version) is too old: the web UI's toolchain (Vite 5, Vitest 2) needs Node.js >= $NODE_MIN_MAJOR"
  exit 1
fi

# The inputs of each step, hashed (file names and contents, in a stable order).
digest() { find "$@" -type f -not -name '*.test.ts' -not -name '*.test.tsx' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64; }

lock_hash=$(digest package.json package-lock.json)
if [ "$(cat node_modules/.lq-installed 2>/dev/null)" != "$lock_hash" ]; then
  log "npm ci (web UI dependencies, Node.js $(node --version))"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock_hash" >node_modules/.lq-installed
fi

build_hash=$(digest package.json package-lock.json index.html vite.config.ts tsconfig.json src public)
if [ "$(cat "$out/.build-stamp" 2>/dev/null)" != "$build_hash" ] || [ ! -f "$out/index.html" ]; then
  log "npm run build (web UI -> services/api/static/app)"
  npm run --silent build
  echo "$build_hash" >"$out/.build-stamp"
fi
