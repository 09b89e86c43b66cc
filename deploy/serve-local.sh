#!/usr/bin/env bash
# Serves a release folder (`make dist`) the way production runs it, on this machine:
# dist/server with APP_ENV=production on a loopback port, behind Caddy with https.
#
#   deploy/serve-local.sh [DIST]        (DIST defaults to ./dist)
#
# Environment, all optional:
#   PROXY_PORT   https port of Caddy on 127.0.0.1 (8443)
#   APP_PORT     port of the app on 127.0.0.1 (a free one)
#   DATA_DIR     database, generated secret and Caddy's local CA (DIST.data, beside the
#                release folder, so that rebuilding it keeps them)
#   JWT_SECRET   signing key (generated once into DATA_DIR/jwt_secret when unset)
#   SMTP_URL     the mail server; when unset (and EMAIL is not off), a local SMTP server
#                (scripts/smtp-sink.py, `make smtp-sink`) keeps every mail in DATA_DIR/mail
#   any other variable of the server (README, "Configuration") is passed on
#
# Caddy's certificate comes from its own local CA, which is not installed anywhere: a browser
# warns about it. Ctrl-C or SIGTERM stops both processes (by their PIDs), and so does either of
# them exiting or the parent of this script going away.
set -euo pipefail

dist=$(cd "${1:-dist}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
caddyfile=$here/Caddyfile
[ -f "$caddyfile" ] || caddyfile=$dist/Caddyfile
command -v caddy >/dev/null || { echo "caddy is not installed (make caddy)" >&2; exit 1; }
[ -x "$dist/server" ] || { echo "$dist/server is missing (make dist)" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
proxy_port=${PROXY_PORT:-8443}
app_port=${APP_PORT:-$(free_port)}
data=${DATA_DIR:-$dist.data}
mkdir -p "$data/caddy"
data=$(cd "$data" && pwd)

if [ -z "${JWT_SECRET:-}" ]; then
  if [ ! -s "$data/jwt_secret" ]; then
    (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n' >"$data/jwt_secret")
  fi
  JWT_SECRET=$(cat "$data/jwt_secret")
fi

pids=()
sink_pid=
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}" $sink_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" $sink_pid; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Production sends mail: without a mail server of the caller's, a local one that keeps every
# mail it receives as a file (plain SMTP on loopback).
if [ -z "${SMTP_URL:-}" ] && [ "${EMAIL:-on}" != off ]; then
  rm -f "$data/smtp-port"
  "$here/../scripts/smtp-sink.py" "$data/mail" --port-file "$data/smtp-port" \
    >"$data/smtp-sink.log" 2>&1 &
  sink_pid=$!
  for _ in $(seq 100); do
    [ -s "$data/smtp-port" ] && break
    kill -0 "$sink_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -s "$data/smtp-port" ] || {
    cat "$data/smtp-sink.log" >&2
    echo "no SMTP_URL, and the local SMTP server did not start (make smtp-sink)" >&2
    exit 1
  }
  export SMTP_URL="smtp://127.0.0.1:$(cat "$data/smtp-port")?tls=none"
  export MAIL_FROM=${MAIL_FROM:-authapp <noreply@localhost>}
  echo "mail is kept in $data/mail (a local SMTP server on ${SMTP_URL#smtp://})"
fi
export PUBLIC_URL=${PUBLIC_URL:-https://127.0.0.1:$proxy_port}

# Caddy serves it over https: Secure cookies whatever the caller's environment says (production
# refuses COOKIE_SECURE=false).
APP_ENV=production COOKIE_SECURE=true JWT_SECRET=$JWT_SECRET \
  TRUSTED_PROXIES=${TRUSTED_PROXIES:-127.0.0.1} LEPTOS_SITE_ADDR=127.0.0.1:$app_port \
  DATABASE_URL=${DATABASE_URL:-sqlite://$data/app.db} "$dist/server" &
pids+=($!)

SITE=127.0.0.1:$proxy_port UPSTREAM=127.0.0.1:$app_port CADDY_TLS=internal \
  XDG_DATA_HOME=$data/caddy XDG_CONFIG_HOME=$data/caddy HOME=$data/caddy \
  caddy run --adapter caddyfile --config "$caddyfile" &
pids+=($!)

echo "serving https://127.0.0.1:$proxy_port (app on 127.0.0.1:$app_port, data in $data)"

# Whoever started this script may die without a signal (a killed test runner), and so may this
# script (SIGKILL): then the two servers are stopped all the same, by their own PIDs.
parent=$PPID
self=$$
(
  while kill -0 "$parent" 2>/dev/null && kill -0 "$self" 2>/dev/null; do sleep 1; done
  kill -TERM "${pids[0]}" "${pids[1]}" $sink_pid 2>/dev/null
) &
pids+=($!)

# The first of the two to exit ends the whole.
wait -n "${pids[0]}" "${pids[1]}"
