#!/usr/bin/env bash
# Make a throwaway PostgreSQL database for the test suite and print its SQLAlchemy URL (nothing on failure).
# Uses the machine's PostgreSQL cluster (installing Debian's `postgresql` package when missing and apt can),
# starts it, and (re)creates the role `judge_test` and database `judge_test`. Output on stdout is the URL only.
set -uo pipefail
log() { echo "pg-test-db: $*" >&2; }
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing postgresql (Debian package)"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q postgresql >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q postgresql >/dev/null 2>&1; } \
      || { log "could not install postgresql"; exit 0; }
  else
    log "no PostgreSQL here"; exit 0
  fi
fi
cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1, $2, $3}')
[ -n "$cluster" ] || { log "no PostgreSQL cluster"; exit 0; }
read -r ver name port <<<"$cluster"
pg_ctlcluster "$ver" "$name" start >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
  pg_isready -q -p "$port" && break
  sleep 1
done
pg_isready -q -p "$port" || { log "cluster $ver/$name did not start"; exit 0; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sh -c "$1"; fi; }
as_pg "psql -q -p $port -v ON_ERROR_STOP=1 -c \"DROP DATABASE IF EXISTS judge_test\" -c \"DROP ROLE IF EXISTS judge_test\" -c \"CREATE ROLE judge_test LOGIN PASSWORD 'judge_test'\" -c \"CREATE DATABASE judge_test OWNER judge_test\"" >/dev/null 2>&1 \
  || { log "could not create the test database"; exit 0; }
echo "postgresql+psycopg2://judge_test:judge_test@127.0.0.1:$port/judge_test"
