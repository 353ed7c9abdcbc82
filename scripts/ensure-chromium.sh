#!/usr/bin/env bash
# The dashboard's browser test drives the system's headless Chromium through Playwright.
# Install it from the distribution's packages if it is missing (needs root and apt-get);
# JOURNEYS_CHROMIUM names another Chromium binary instead.
set -eu
browser="${JOURNEYS_CHROMIUM:-/usr/bin/chromium}"
[ -x "$browser" ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  [ -x "$browser" ] && exit 0
fi
echo "No Chromium at $browser: install it (apt-get install chromium) or set JOURNEYS_CHROMIUM; the dashboard's browser test will fail without it" >&2
