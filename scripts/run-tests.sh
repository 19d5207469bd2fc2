#!/usr/bin/env bash
# Runs the lint and type checks, then the whole test suite, with the given interpreter; any ruff or mypy
# error fails the run before pytest starts. pytest's exit code 5 (no tests collected) is a failure here: the
# suite must always contain real tests. The store's integration tests also run against PostgreSQL when a
# throwaway database can be made (scripts/pg-test-db.sh); set JUDGE_TEST_PG=0 to skip.
set -uo pipefail
py=${1:-.venv/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
"$py" -m ruff check . || { echo "error: ruff check failed" >&2; exit 1; }
"$py" -m mypy || { echo "error: mypy (strict, on judge/) failed" >&2; exit 1; }
if [ -z "${JUDGE_TEST_PG_URL:-}" ] && [ "${JUDGE_TEST_PG:-1}" != 0 ]; then
  url=$(bash "$here/pg-test-db.sh")
  if [ -n "$url" ]; then
    export JUDGE_TEST_PG_URL=$url
    echo "PostgreSQL tests: on ($url)"
  else
    echo "PostgreSQL tests: skipped (no PostgreSQL available)"
  fi
fi
"$py" -m pytest "${@:2}"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests - the suite must never be empty" >&2
  exit 1
fi
exit "$rc"
