#!/usr/bin/env bash
# The intake tests drive Segment's official Node and browser SDKs, and the dashboard's test runs
# axe-core (accessibility) in the browser: install them (pinned by
# tests/node/package-lock.json) with the machine's Node.js and npm when one is missing.
set -eu
cd "$(dirname "$0")/../tests/node"
[ -d node_modules/@segment/analytics-node ] && [ -d node_modules/@segment/analytics-next ] && [ -d node_modules/axe-core ] && exit 0
if ! command -v npm >/dev/null; then
  echo "No npm: install Node.js 20 and npm; the Node SDK test will fail without them" >&2
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
