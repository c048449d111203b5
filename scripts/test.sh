#!/usr/bin/env bash
# The one command that runs keygate's tests: formatting, vet, the whole
# suite with the race detector, and each fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt: not formatted:"; echo "$unformatted"; exit 1
fi
go vet ./...

# PostgreSQL: a throwaway cluster from Debian's binaries, unless the caller
# names a server in KEYGATE_TEST_POSTGRES. Tests that need PostgreSQL skip
# only when neither exists (CI installs the binaries).
pg_script="$(pwd)/scripts/pg-test-server.sh"
# free_port prints a free TCP port on 127.0.0.1 from 55432 up.
free_port() {
  local p
  for p in $(seq 55432 55999); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "no free port in 55432-55999" >&2
  return 1
}
if [ -z "${KEYGATE_TEST_POSTGRES:-}" ] && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  if [ -z "${KEYGATE_PG_TEST_DIR:-}${KEYGATE_PG_TEST_PORT:-}" ]; then
    # A private cluster per run (its own directory and a free port), so two
    # runs on one host never share or kill each other's; torn down on exit.
    KEYGATE_PG_TEST_DIR=$(mktemp -d /tmp/keygate-pg-test.XXXXXX)
    chmod 755 "$KEYGATE_PG_TEST_DIR" # reachable by the postgres user when run as root
    KEYGATE_PG_TEST_PORT=$(free_port)
    export KEYGATE_PG_TEST_DIR KEYGATE_PG_TEST_PORT
    trap '"$pg_script" destroy || true' EXIT
  else
    # A cluster the caller named: torn down on exit unless it was running before.
    "$pg_script" status 2>/dev/null || trap '"$pg_script" destroy || true' EXIT
  fi
  KEYGATE_TEST_POSTGRES=$("$pg_script" start)
  export KEYGATE_TEST_POSTGRES
fi
if [ -n "${KEYGATE_TEST_POSTGRES:-}" ]; then
  export KEYGATE_TEST_PG_SCRIPT="$pg_script"
  echo "PostgreSQL tests on ${KEYGATE_TEST_POSTGRES}"
else
  echo "no PostgreSQL (apt-get install postgresql): PostgreSQL tests skip"
fi

go test -race -count=1 -timeout 20m ./...
# The store conformance suite and the REST API suite once more, on PostgreSQL.
if [ -n "${KEYGATE_TEST_POSTGRES:-}" ]; then
  KEYGATE_TEST_BACKEND=postgres go test -race -count=1 -timeout 20m ./keystore/... ./httpapi/...
fi
# Fuzz targets, briefly (corpus in testdata/fuzz). The budgets are counts,
# not durations: with a wall-clock -fuzztime, Go 1.26's fuzz coordinator can
# report a bare "context deadline exceeded" failure when the deadline lands
# while a worker is busy, e.g. minimising a new input (golang/go#75804,
# fixed in Go 1.27). A count has no deadline to race. Minimisation is
# bounded by a count too, so a slow target cannot stall the run.
for target in $(go test -list '^Fuzz' ./... 2>/dev/null | grep '^Fuzz' || true); do
  pkg=$(grep -rl "func $target(" --include='*_test.go' . | head -1 | xargs dirname)
  go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-5000x}" -fuzzminimizetime "${FUZZMINIMIZETIME:-200x}" "$pkg"
done
