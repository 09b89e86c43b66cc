#!/usr/bin/env bash
# Fuzzes every API endpoint the way a client would: schemathesis reads the server's own OpenAPI
# document (GET /api/openapi.json) and sends what it allows and what it does not, in JSON and as
# forms, with no token, with a valid one (as a Bearer token, and as a page's cookies) and with a
# revoked one. It fails on any 5xx, on any answer the document does not describe, and on a
# server panic.
#
# Two passes: SQLite in development (plain-http cookies), then, when DATABASE_URL_PG names a
# PostgreSQL database (`scripts/pg-tmp.sh run`, as `make fuzz` does), PostgreSQL in
# APP_ENV=production: `__Host-` cookies, HSTS, and the origin check expecting https.
#
#   fuzz/run.sh [SERVER]          (SERVER defaults to dist/server; `make fuzz` builds it)
#
# Environment, all optional:
#   FUZZ_TIME     seconds per token state in the first pass (40), a third of that in the
#                 second; the whole run takes about five and a half times FUZZ_TIME
#   FUZZ_SEED     the seed of every run (a random one each, printed, by default): with the seed a
#                 failed run printed, the same requests are generated again
#   SCHEMATHESIS  the schemathesis command (tools/venv/bin/schemathesis, made by `make fuzz-deps`)
#
# The server runs on a free loopback port with a fresh database in a temporary folder, and is
# stopped by its PID however this script ends. When something failed, the failures of each run
# are printed again at the very end, after the server's errors, where a log's tail shows them.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
server=$(realpath "${1:-$root/dist/server}")
st=${SCHEMATHESIS:-$root/tools/venv/bin/schemathesis}
time_budget=${FUZZ_TIME:-40}
[ -x "$server" ] || { echo "$server is missing (make dist)" >&2; exit 1; }
[ -x "$st" ] || { echo "$st is missing (make fuzz-deps)" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/authapp-fuzz.XXXXXX")
pid=
sink_pid=
failed=()
failed_logs=()
# Stops the server of the current pass (by its PID), if one runs.
stop_server() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    # The server finishes in-flight requests (for up to 10 s); at 15 s it is killed.
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
  fi
}
stop() {
  local status=$?
  trap - EXIT INT TERM
  stop_server
  if [ -n "$sink_pid" ]; then
    kill -TERM "$sink_pid" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true
  fi
  if [ "$status" != 0 ]; then
    for log in "$dir"/server-*.log; do
      [ -f "$log" ] || continue
      # Its warnings (every refused cross-site post, ...) are many and expected: errors first.
      echo "---- $(basename "$log"): the server's errors and panics (last 20) ----"
      { grep -E 'ERROR|panicked' "$log" || echo "none"; } | tail -n 20 || true
      echo "---- $(basename "$log"): its last 5 lines ----"
      tail -n 5 "$log"
    done
  fi
  if [ "$status" != 0 ]; then
    for log in ${failed_logs[@]+"${failed_logs[@]}"}; do
      echo "---- $(head -n 1 "$log") ----"
      # Its failures and errors, each failure with the curl command that repeats it (or, when
      # schemathesis reported neither, its last lines), then the seed and the verdict.
      if grep -qE '= (ERRORS|FAILURES) =' "$log"; then
        sed -n '/= \(ERRORS\|FAILURES\) =/,/= \(WARNINGS\|SUMMARY\) =/p' "$log" | sed '$d' | head -n 80 || true
      else
        tail -n 15 "$log"
      fi
      grep -E '^Seed: |^=+ .*(fail|pass|error|warning).* in [0-9.]+s =+$' "$log" || true
    done
    [ ${#failed[@]} -eq 0 ] || printf 'fuzzing failed: %s\n' "${failed[@]}"
  fi
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The mail server both passes send to (production refuses to start without one): a real SMTP
# server on a free loopback port, plain SMTP (`make smtp-sink`), stopped by its PID at the end.
"$root/scripts/smtp-sink.py" "$dir/mail" --port-file "$dir/smtp-port" >"$dir/smtp-sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 100); do
  [ -s "$dir/smtp-port" ] && break
  kill -0 "$sink_pid" 2>/dev/null || break
  sleep 0.1
done
[ -s "$dir/smtp-port" ] || { cat "$dir/smtp-sink.log" >&2; echo "the SMTP server did not start" >&2; exit 1; }
smtp_url="smtp://127.0.0.1:$(cat "$dir/smtp-port")?tls=none"

# One pass: the server started with the database URL $2 in the environment $3 (development or
# production), fuzzed for $4 seconds per token state, then stopped. $1 names the pass.
fuzz_pass() {
  local pass=$1 database_url=$2 app_env=$3 time_budget=$4 port base origin scheme prefix log
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base=http://127.0.0.1:$port
  log=$dir/server-$pass.log
  # In production the site is served over https (a TLS proxy in front): cookie POSTs must name
  # that origin, and the cookies are the `__Host-` ones.
  if [ "$app_env" = production ]; then scheme=https prefix=__Host-; else scheme=http prefix=; fi
  origin=$scheme://127.0.0.1:$port
  echo
  echo "######## fuzzing pass: $pass ($app_env, ${database_url%%:*}) ########"

  # The sign-in limits stay on: 429 is one of the answers the document describes. The tokens
  # are made before the first run and must outlive the last, whatever FUZZ_TIME is. In
  # development the cookies are the plain-http ones the runs send, whatever the caller's
  # environment says; in production they are `Secure`, as production refuses anything else.
  local cookie_env=(COOKIE_SECURE=false)
  [ "$app_env" = production ] && cookie_env=(COOKIE_SECURE=true)
  env JWT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')" \
    ACCESS_TTL=$((time_budget * 6 + 900)) APP_ENV="$app_env" "${cookie_env[@]}" \
    LEPTOS_SITE_ADDR=127.0.0.1:$port DATABASE_URL="$database_url" DATA_DIR="$dir/data-$pass" \
    SMTP_URL="$smtp_url" MAIL_FROM="authapp <noreply@authapp.test>" PUBLIC_URL="$origin" \
    RUST_LOG="${RUST_LOG:-warn}" "$server" >"$log" 2>&1 &
  pid=$!
  local ready=
  for _ in $(seq 300); do
    if curl -fsS "$base/health" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$ready" ] || { cat "$log" >&2; echo "the server did not start answering on $base" >&2; exit 1; }

  # JSON in, JSON out: prints field $2 of the answer to POST $1 with body $3 (and a Bearer $4).
  post() {
    local auth=(-H "X-Fuzz: setup")
    [ -z "${4:-}" ] || auth=(-H "Authorization: Bearer $4")
    curl -fsS -X POST "$base$1" -H 'Content-Type: application/json' "${auth[@]}" -d "$3" |
      python3 -c "import json, sys; print(json.load(sys.stdin)['$2'])"
  }
  # Every token is made before the fuzzing, whose failed sign-ins soon exhaust this address's
  # allowance. The run that signs out uses another account's token: the valid run's "sign out
  # everywhere else" would end it otherwise.
  local account='{"username": "fuzzer", "password": "a fuzzing passphrase"}'
  local other='{"username": "fuzzer2", "password": "a fuzzing passphrase"}'
  local valid revoked for_logout cookie_access cookie_refresh
  post /api/register username "$account" >/dev/null
  post /api/register username "$other" >/dev/null
  valid=$(post /api/login access_token "$account")
  revoked=$(post /api/login access_token "$account")
  post /api/logout revoked "{}" "$revoked" >/dev/null
  for_logout=$(post /api/login access_token "$other")
  cookie_access=$(post /api/login access_token "$other")
  cookie_refresh=$(post /api/login refresh_token "$other")

  # schemathesis keeps its cache in the working directory: the temporary one.
  cd "$dir"
  run() {
    local name="$pass: $1" log
    shift
    runs=$((runs + 1))
    log=$dir/run-$runs.log
    echo
    echo "schemathesis: $name" >"$log"
    echo "==== schemathesis: $name ===="
    # --checks all: no 5xx, statuses, content types, headers and bodies as documented, data
    # the document forbids refused and data it allows accepted, 405 with Allow for other
    # methods, and no endpoint that needs a token answering without one.
    "$st" --config-file "$root/fuzz/schemathesis.toml" run "$base/api/openapi.json" \
      --checks all --no-color --suppress-health-check all --request-timeout 10 ${seed[@]+"${seed[@]}"} "$@" \
      2>&1 | tee -a "$log" || { failed+=("$name"); failed_logs+=("$log"); }
  }
  run "no token" --max-time "$time_budget"
  # Everything but what ends the token's own session (schemathesis learns the session ids from
  # GET /api/sessions), which would leave the rest of the run without a valid token.
  run "a valid token" --max-time "$time_budget" -H "Authorization: Bearer $valid" \
    --exclude-operation-id logout --exclude-operation-id revoke_session
  run "a valid token, ending its session" --max-examples 20 -H "Authorization: Bearer $for_logout" \
    --include-operation-id logout --include-operation-id revoke_session
  run "a revoked token" --max-time "$time_budget" -H "Authorization: Bearer $revoked"
  # A page whose access cookie has expired: the refresh cookie alone, renewed on the way in (the
  # first renewal rotates it; the same cookie again is the previous token, then reuse).
  run "a refresh cookie" --max-examples 20 -H "Cookie: ${prefix}refresh_token=$cookie_refresh" \
    -H "Origin: $origin" --include-operation-id refresh --include-operation-id whoami
  # A page: the access cookie, and this site as Origin (cookie POSTs need it). Last: its "sign
  # out everywhere else" ends the other sessions of its account.
  run "a valid access cookie" --max-time "$time_budget" \
    -H "Cookie: ${prefix}auth_token=$cookie_access" -H "Origin: $origin" \
    --exclude-operation-id logout --exclude-operation-id revoke_session

  echo
  local code
  code=$(curl -s -w " %{http_code}" -H "Authorization: Bearer $valid" "$base/api/me" || true)
  [ "${code##* }" = 200 ] || failed+=("$pass: the valid token was refused after its run: $code")
  code=$(curl -s -w " %{http_code}" -H "Cookie: ${prefix}auth_token=$cookie_access" "$base/api/me" || true)
  [ "${code##* }" = 200 ] || failed+=("$pass: the valid cookie was refused after its run: $code")
  if [ "$app_env" = production ]; then
    curl -fsS -D - -o /dev/null "$base/health" | grep -qi '^strict-transport-security:' \
      || failed+=("$pass: no HSTS header in production")
  fi
  # A cookie POST naming this site's origin passes the origin check (here, to a 404 for an
  # unknown session), one naming the plain-http origin does not: the runs above were not all
  # refused at the door, which their documented 403 would hide.
  local probe=(curl -s -o /dev/null -w "%{http_code}" -X POST "$base/api/sessions/revoke"
               -H "Cookie: ${prefix}auth_token=$cookie_access" -d id=none)
  code=$("${probe[@]}" -H "Origin: $origin" || true)
  [ "$code" = 404 ] || failed+=("$pass: a cookie POST from $origin got $code, not 404")
  code=$("${probe[@]}" -H "Origin: http://attacker.example" || true)
  [ "$code" = 403 ] || failed+=("$pass: a cross-site cookie POST got $code, not 403")
  curl -fsS "$base/health" >/dev/null || failed+=("$pass: the server stopped answering")
  if grep -q 'panicked' "$log"; then
    failed+=("$pass: the server panicked")
  fi
  stop_server
}

runs=0
seed=()
[ -z "${FUZZ_SEED:-}" ] || seed=(--seed "$FUZZ_SEED")
fuzz_pass sqlite "sqlite://$dir/app.db" development "$time_budget"
if [ -n "${DATABASE_URL_PG:-}" ]; then
  # A database of its own in that cluster: DATABASE_URL_PG names one the tests may use too.
  pg_db=fuzz_$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
  psql "$DATABASE_URL_PG" -qc "CREATE DATABASE $pg_db" >/dev/null
  fuzz_pass postgres "${DATABASE_URL_PG%/*}/$pg_db" production \
    $(( time_budget / 3 > 10 ? time_budget / 3 : 10 ))
else
  echo "fuzzing: no PostgreSQL pass (DATABASE_URL_PG is not set: run under scripts/pg-tmp.sh)"
  [ -z "${FUZZ_REQUIRE_PG:-}" ] || failed+=("FUZZ_REQUIRE_PG is set but DATABASE_URL_PG is not")
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzzing failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "fuzzing: no 5xx, no answer outside the document, no panic ($runs runs)"
