#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for keygate's tests, from Debian's binaries
# (/usr/lib/postgresql/*/bin). Never use it for real data: trust auth.
#
#   scripts/pg-test-server.sh start        initialise (first time) and start
#   scripts/pg-test-server.sh stop         fast shutdown, keeps the data
#   scripts/pg-test-server.sh restart [S]  stop, wait S seconds (default 0), start
#   scripts/pg-test-server.sh url          print the admin URL
#   scripts/pg-test-server.sh status       exit 0 when running
#   scripts/pg-test-server.sh destroy      stop and remove the state directory
#
# State directory: $KEYGATE_PG_TEST_DIR (default /tmp/keygate-pg-test); it
# must be reachable by the postgres OS user when run as root.
# Port: $KEYGATE_PG_TEST_PORT (default 55432), on 127.0.0.1 only.
# Binaries: $KEYGATE_PG_BIN, else the newest /usr/lib/postgresql/*/bin.
# Run as root, the server runs as the `postgres` OS user (created if missing).
set -euo pipefail

dir=${KEYGATE_PG_TEST_DIR:-/tmp/keygate-pg-test}
port=${KEYGATE_PG_TEST_PORT:-55432}
data=$dir/data
sock=$dir/socket
logfile=$dir/postgres.log

url() { echo "postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable"; }

find_bin() {
  if [ -n "${KEYGATE_PG_BIN:-}" ]; then
    echo "$KEYGATE_PG_BIN"
    return
  fi
  local b
  b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$b" ] || [ ! -x "$b/postgres" ]; then
    echo "pg-test-server: no PostgreSQL binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
    exit 1
  fi
  echo "$b"
}

# as_pg runs a command as the user that owns the cluster.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id postgres >/dev/null 2>&1 && return 0
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
}

running() {
  [ -f "$data/PG_VERSION" ] || return 1
  as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

start() {
  ensure_user
  mkdir -p "$dir"
  chmod 0755 "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
  fi
  as_pg mkdir -p "$sock"
  if running; then
    return 0
  fi
  as_pg "$bin/pg_ctl" -D "$data" -l "$logfile" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $sock -c max_connections=300 -c shared_buffers=32MB" start >/dev/null || {
    tail -20 "$logfile" >&2 || true
    exit 1
  }
}

stop() {
  if running; then
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
  fi
}

bin=$(find_bin)
case "${1:-}" in
  start) start; url ;;
  stop) stop ;;
  restart)
    stop
    sleep "${2:-0}"
    start
    ;;
  url) url ;;
  status) running ;;
  destroy)
    stop
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop|restart [seconds]|url|status|destroy" >&2
    exit 2
    ;;
esac
