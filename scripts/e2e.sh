#!/usr/bin/env bash
# The browser tests: the release build served on a free loopback port with a fresh database,
# driven by Playwright (`cargo leptos end-to-end --release --split`). The https tests also start
# dist/server in production mode behind Caddy (end2end/global-setup.ts).
#
#   scripts/e2e.sh      (run by `make e2e`, which first installs the tools, Chromium and Caddy
#                        and builds dist/; run alone, it expects all of them)
#
# Everything goes to target/e2e/output.log. The run fails when cargo leptos fails, when a test
# failed, was interrupted or did not run, when no test passed, or when the server panicked,
# whatever Playwright's exit status says. What failed is printed, and so is a test that failed
# once and passed on its retry (flaky: printed, not failed); then Playwright's summary.
#
# Environment: RUST_LOG (warn by default) for the server under test; CHROMIUM_PATH (set by the
# Makefile) for Playwright.
set -euo pipefail
cd "$(dirname "$0")/.."

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=target/e2e
log=$dir/output.log
# The servers global-setup.ts starts keep their output in target/e2e-*.
rm -rf "$dir" target/e2e-*
mkdir -p "$dir"

# The SMTP server, up before the app: its port is known once it listens (--port-file), and its
# certificate authority (--tls makes one in the mail folder) is the one the app trusts.
mail=$PWD/$dir/mail
scripts/smtp-sink.py "$mail" --tls --port-file "$dir/smtp.port" >"$dir/smtp.log" 2>&1 &
sink=$!
# Should this script die without running its traps (SIGKILL), the SMTP server goes all the same.
self=$$
( while kill -0 "$self" 2>/dev/null; do sleep 1; done; kill -TERM "$sink" 2>/dev/null ) &
guard=$!
stop_sink() {
  kill -TERM "$sink" "$guard" 2>/dev/null || true
  wait "$sink" "$guard" 2>/dev/null || true
}
trap stop_sink EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
for _ in $(seq 300); do
  [ -s "$dir/smtp.port" ] && break
  if ! kill -0 "$sink" 2>/dev/null; then
    echo "the SMTP server did not start:" >&2
    cat "$dir/smtp.log" >&2
    exit 1
  fi
  sleep 0.1
done
[ -s "$dir/smtp.port" ] || { echo "the SMTP server did not listen within 30 s" >&2; exit 1; }
smtp_port=$(cat "$dir/smtp.port")
echo "end-to-end: server on 127.0.0.1:$port, database in $dir, SMTP on 127.0.0.1:$smtp_port (mails in $dir/mail)"

# PUBLIC_URL is the address the tests browse, so that a mailed link opens in the test's browser.
# TRUSTED_PROXIES: the mail tests speak as clients of their own (X-Forwarded-For), as people
# behind a proxy do, so that the per-client limit on reset links counts each test apart; the
# other tests send no such header and are counted by their loopback address as before.
# (The https stack and the short-token server of global-setup.ts mail through the same server.)
export SMTP_URL=smtp://localhost:$smtp_port SMTP_CA_FILE=$mail/ca.pem \
  MAIL_FROM="authapp <noreply@authapp.test>" MAIL_DIR=$mail
status=0
LEPTOS_SITE_ADDR=127.0.0.1:$port DATABASE_URL=sqlite://$dir/app.db DATA_DIR=$dir \
  PUBLIC_URL=http://127.0.0.1:$port TRUSTED_PROXIES=127.0.0.1 \
  RUST_LOG=${RUST_LOG:-warn} cargo leptos end-to-end ${RELEASE_BUILD_FLAGS:---release --split --precompress} 2>&1 | tee "$log" || status=$?

# Playwright's summary lines: "  12 passed (1.2m)", "  1 failed", "  2 did not run"...
count() {
  grep -Eo "^ +[0-9]+ $1" "$log" | tr -dc 0-9 || true
}
passed=$(count passed)
failed=$(count failed)
flaky=$(count flaky)
unrun=$({ grep -E '^ +[0-9]+ (interrupted|did not run)' "$log" || true; } | awk '{ n += $1 } END { print n + 0 }')
panics=$(grep -c "panicked at" "$log" || true)

if [ "$status" != 0 ] || [ "${failed:-0}" != 0 ] || [ "${flaky:-0}" != 0 ] \
  || [ "${unrun:-0}" != 0 ] || [ "${passed:-0}" = 0 ]; then
  echo "---- what failed, or failed once and passed on its retry (cargo leptos end-to-end exited with $status; the full log is $log) ----"
  sed -n '/^  1) /,/^  [0-9]* passed/p' "$log" | grep -v '^ *at ' | head -n 120 || true
  grep -E -A12 '^Error: ' "$log" | head -n 60 || true
  # A failed start: the last words of every server the setup started.
  if [ "$status" != 0 ]; then
    for other in target/e2e-*/output.log; do
      if [ -f "$other" ]; then
        echo "---- last lines of $other ----"
        tail -n 20 "$other"
      fi
    done
  fi
  # No test passed: perhaps none ran at all, and the end of the log says why.
  if [ "${passed:-0}" = 0 ]; then
    tail -n 30 "$log"
  fi
fi
if [ "${panics:-0}" != 0 ]; then
  echo "---- the server panicked during the run ----"
  grep -A2 "panicked at" "$log" | head -n 20 || true
fi

echo "---- Playwright's summary ----"
awk '/^  [0-9]+ (failed|flaky|interrupted|did not run|skipped|passed)/ || /^  [0-9]+ errors? w[a-z]+ not a part/ \
  { p = 1; print; next } p && /^    \[/ { print; next } { p = 0 }' "$log" | grep . \
  || echo "  no Playwright summary"

test "$status" -eq 0 && test "${passed:-0}" -gt 0 && test "${failed:-0}" -eq 0 \
  && test "${unrun:-0}" -eq 0 && test "${panics:-0}" -eq 0
