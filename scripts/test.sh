#!/usr/bin/env bash
# The test command: formatting, lints, and the whole suite on SQLite and then on PostgreSQL.
#
# PostgreSQL is never skipped silently: it is required unless MASH_SKIP_POSTGRES=1 is given,
# and then the skip is printed. MASH_TEST_DATABASE_URL picks the server (a database on it is
# created per test and dropped afterwards); the default is the local one, trust auth.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${MASH_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "tests on SQLite"
env -u MASH_TEST_DATABASE_URL cargo test --locked

if [ "${MASH_SKIP_POSTGRES:-0}" = "1" ]; then
  step "SKIPPING the PostgreSQL run because MASH_SKIP_POSTGRES=1"
  exit 0
fi

step "tests on PostgreSQL (${PG_URL%%@*}@…)"
host_port="${PG_URL#*@}"; host_port="${host_port%%/*}"
if ! pg_isready -q -h "${host_port%%:*}" -p "${host_port##*:}" 2>/dev/null; then
  echo "PostgreSQL at ${host_port} is unreachable: start it, set MASH_TEST_DATABASE_URL, or run with MASH_SKIP_POSTGRES=1" >&2
  exit 1
fi
MASH_TEST_DATABASE_URL="$PG_URL" cargo test --locked --test api
