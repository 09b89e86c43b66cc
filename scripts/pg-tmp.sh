#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: a temporary folder, a free loopback port, an
# unprivileged user (initdb refuses root), and stopped by its own PID.
#
#   scripts/pg-tmp.sh start       prints the folder; its `url` file holds the database URL
#   scripts/pg-tmp.sh stop DIR    stops that cluster and removes its folder
#   scripts/pg-tmp.sh run CMD...  starts one, runs CMD with DATABASE_URL_PG set, stops it
#                                 whatever CMD does, and exits with CMD's status
#   scripts/pg-tmp.sh pause DIR   stops that cluster but keeps it (a database outage, in tests)
#   scripts/pg-tmp.sh resume DIR  starts it again on the same port: the same URL works again
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }

# As root the cluster belongs to the `postgres` user Debian's package creates.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir port password
  dir=$(mktemp -d /tmp/authapp-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  # A password of its own: another local user cannot sign in as the superuser meanwhile.
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  (umask 077; echo "$password" >"$dir/password")
  [ "$(id -u)" = 0 ] && chown postgres: "$dir/password"
  as_owner "$bin/initdb" -D "$dir/data" -A scram-sha-256 -U postgres --pwfile="$dir/password" \
      -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1; }
  for _ in 1 2 3; do
    port=$(free_port)
    if serve "$dir" "$port"; then
      echo "$port" >"$dir/port"
      PGPASSWORD=$password as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres authapp \
        || { cat "$dir/server.log" >&2; stop "$dir"; exit 1; }
      (umask 077; echo "postgres://postgres:$password@127.0.0.1:$port/authapp" >"$dir/url")
      echo "$dir"
      return 0
    fi
  done
  cat "$dir/server.log" >&2
  rm -rf "$dir"
  exit 1
}

# Starts the server of the cluster in $1 on port $2, and waits until it accepts connections.
serve() {
  as_owner "$bin/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 30 \
    -o "-p $2 -k $1 -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
}

# Stops the server of the cluster in $1, if it runs, and waits until it has exited.
halt() {
  local dir=$1 pid
  if [ -f "$dir/data/postmaster.pid" ]; then
    pid=$(head -1 "$dir/data/postmaster.pid")
    # SIGINT is PostgreSQL's fast shutdown: sessions are ended, nothing is waited for.
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

stop() {
  halt "$1"
  rm -rf "$1"
}

# A folder this script made (a `start` that printed it), never another path.
cluster() {
  case "$1" in /tmp/authapp-pg.*) ;; *) echo "not a cluster of pg-tmp.sh: $1" >&2; exit 2 ;; esac
  [ -f "$1/port" ] || { echo "no cluster in $1" >&2; exit 1; }
}

case "${1:-}" in
  start) start ;;
  stop) stop "$2" ;;
  pause) cluster "$2"; halt "$2" ;;
  resume) cluster "$2"; serve "$2" "$(cat "$2/port")" || { tail -20 "$2/server.log" >&2; exit 1; } ;;
  run)
    shift
    dir=$(start)
    trap 'stop "$dir"' EXIT INT TERM
    DATABASE_URL_PG=$(cat "$dir/url") "$@"
    ;;
  *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
