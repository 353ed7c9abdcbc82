#!/usr/bin/env bash
# Start the machine's PostgreSQL if the tests will need it and it is not running.
# Skipped when JOURNEYS_TEST_POSTGRES_URL points the tests at a server of your own.
set -eu
[ -n "${JOURNEYS_TEST_POSTGRES_URL:-}" ] && exit 0
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then exit 0; fi
if command -v pg_ctlcluster >/dev/null; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
fi
echo "PostgreSQL is not running on 127.0.0.1:5432; the PostgreSQL tests will start one with testcontainers if Docker is available, or be reported as errors" >&2
