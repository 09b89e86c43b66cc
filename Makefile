# Two commands do everything on a fresh machine:
#   make dev   installs what is missing, then serves the app with live reload (cargo leptos watch)
#   make test  installs what is missing, then runs every check and test, Playwright included
# Every install step is skipped when the tool is already there.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# npm-installed build tools (wasm-opt) come first on PATH, ahead of any Debian binaryen.
export PATH := $(CURDIR)/tools/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)

CARGO_LEPTOS_VERSION := 0.3.11
CARGO_AUDIT_VERSION := 0.22.2
# The RustSec advisory database: the offline snapshot beside the repository when there is one,
# otherwise the live database, which cargo audit fetches itself.
ADVISORY_DB := $(abspath $(CURDIR)/../shared/advisory-db)
# The CLI must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
# The release build, one set of flags for every recipe and script that makes one: split (the
# signed-in pages are lazy routes: a WASM built without --split cannot load them), and its static
# files precompressed (brotli and gzip beside each file; the server sends whichever the browser
# accepts).
export RELEASE_BUILD_FLAGS := --release --split --precompress
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM_PATH ?= $(CHROMIUM)

.PHONY: help dev dev-pg test quick tools openssl chromium check fmt clippy test-rust e2e bench audit \
        wasm-target cargo-leptos wasm-bindgen wasm-opt e2e-deps wrk cargo-audit caddy dist serve-dist \
        fuzz fuzz-deps postgresql smtp-sink promtool lighthouse lighthouse-gate

help:
	@echo "make dev-pg - make dev on a throwaway PostgreSQL cluster instead of SQLite"
	@echo "make dev    - install what is missing, then cargo leptos watch on http://127.0.0.1:3000"
	@echo "make test   - install what is missing, then fmt, clippy (ssr, hydrate), Rust tests, Playwright"
	@echo "make quick  - the inner loop, about two minutes warm: fmt, clippy (ssr), the core's unit tests"
	@echo "make test-rust / make e2e - only the Rust tests / only the browser tests"
	@echo "make fuzz   - schemathesis against the release server and its OpenAPI document"
	@echo "make audit  - known-vulnerable dependencies (cargo audit against the RustSec database)"
	@echo "make bench  - benchmarks of the auth hot path (writes bench/RESULTS.md)"
	@echo "make lighthouse - Lighthouse scores of the release build's pages (mobile simulation)"
	@echo "make dist   - a release folder (dist/): the server binary and its site, nothing else"
	@echo "make serve-dist - dist/ in production mode behind Caddy on https://127.0.0.1:8443"

# ---------------------------------------------------------------- tools

tools: openssl wasm-target cargo-leptos wasm-bindgen wasm-opt e2e-deps cargo-audit

# Debian's OpenSSL headers and pkg-config: webauthn-rs (passkeys) verifies signatures with
# OpenSSL through the openssl crate.
openssl:
	@pkg-config --exists openssl 2>/dev/null \
	  || { apt-get update && apt-get install -y libssl-dev pkg-config; }

wasm-target:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown \
	  || rustup target add wasm32-unknown-unknown

# ~25 minutes from source on 2 cores; only the first time.
cargo-leptos:
	@cargo leptos --version 2>/dev/null | grep -qF "$(CARGO_LEPTOS_VERSION)" \
	  || cargo install cargo-leptos --version $(CARGO_LEPTOS_VERSION) --locked --ignore-rust-version

# ~10 minutes from source; only the first time.
cargo-audit:
	@cargo audit --version 2>/dev/null | grep -qF "$(CARGO_AUDIT_VERSION)" \
	  || cargo install cargo-audit --version $(CARGO_AUDIT_VERSION) --locked

# Not --locked: one of its locked dependencies is no longer on the registry.
wasm-bindgen:
	@wasm-bindgen --version 2>/dev/null | grep -qF "$(WASM_BINDGEN_VERSION)" \
	  || cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

wasm-opt: tools/node_modules/.bin/wasm-opt
tools/node_modules/.bin/wasm-opt: tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund
	@touch $@

e2e-deps: end2end/node_modules/.package-lock.json
end2end/node_modules/.package-lock.json: end2end/package.json end2end/package-lock.json
	cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	@touch $@

# schemathesis (PyPI) in a virtual environment of its own, for `make fuzz`. Debian's python3
# makes venvs only with python3-venv installed.
PYTHON := $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
fuzz-deps: tools/venv/bin/schemathesis
tools/venv/bin/schemathesis: fuzz/requirements.txt
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { apt-get update && apt-get install -y python3-venv; }
	rm -rf tools/venv && $(PYTHON) -m venv tools/venv
	tools/venv/bin/pip install --quiet --disable-pip-version-check -r fuzz/requirements.txt
	@touch $@

# Debian's Chromium: Playwright's own browser download is not reachable here.
chromium:
	@test -x "$(CHROMIUM)" || { apt-get update && apt-get install -y chromium; }

# Debian's Caddy: the TLS reverse proxy of the https browser tests. Its package enables a
# systemd service; the tests never use it (they run their own Caddy on a free port).
caddy:
	@command -v caddy >/dev/null || { apt-get update && apt-get install -y caddy; }

# Debian's PostgreSQL, for the tests of several instances on one database. The tests never use
# the cluster its package may start: scripts/pg-tmp.sh runs a throwaway one of their own.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || { apt-get update && apt-get install -y postgresql; }

# Debian's aiosmtpd, a real SMTP server: scripts/smtp-sink.py runs it on a free loopback port
# for the tests that read the mail the service sends.
smtp-sink:
	@$(PYTHON) -c 'import aiosmtpd' 2>/dev/null \
	  || { apt-get update && apt-get install -y python3-aiosmtpd; }

# Prometheus's own checker of the metrics' text format (Debian's prometheus package): the
# process tests run `promtool check metrics` on what METRICS_ADDR serves.
promtool:
	@command -v promtool >/dev/null 2>&1 \
	  || { apt-get update && apt-get install -y --no-install-recommends prometheus; }

# ---------------------------------------------------------------- the two commands

# Every build of the site is split (`--split`): the pages only a signed-in person opens are lazy
# routes (app/src/lib.rs) in WASM chunks of their own, and a WASM built without it cannot load.
dev: tools
	cargo leptos watch --split

# The same on PostgreSQL: a throwaway cluster, stopped and removed when the watch stops.
dev-pg: tools postgresql
	scripts/pg-tmp.sh run sh -c 'DATABASE_URL="$$DATABASE_URL_PG" cargo leptos watch --split'

test: tools chromium audit check test-rust fuzz lighthouse-gate e2e

# ---------------------------------------------------------------- checks and tests

# A vulnerability in any crate we compile fails; unmaintained-crate warnings are listed only.
# The one ignored advisory (.cargo/audit.toml) is for a crate no binary compiles: checked here.
audit: cargo-audit
	@if [ -f "$(ADVISORY_DB)/SNAPSHOT" ]; then \
	  echo "cargo audit: advisory database $(ADVISORY_DB), $$(head -n 1 "$(ADVISORY_DB)/SNAPSHOT")"; \
	  cargo audit --db "$(ADVISORY_DB)" --no-fetch --stale; \
	else \
	  db="$${CARGO_HOME:-$$HOME/.cargo}/advisory-db"; \
	  echo "cargo audit: the live RustSec advisory database, fetched into $$db"; \
	  rc=0; cargo audit || rc=$$?; \
	  echo "advisory database as of $$(git -C "$$db" log -1 --format=%cd 2>/dev/null || echo 'an unknown date')"; \
	  exit $$rc; \
	fi
	@out=$$(cargo tree --workspace --target all -i rsa 2>/dev/null) \
	  || { echo "cargo tree failed: cannot tell whether rsa is compiled in"; exit 1; }; \
	if [ -n "$$out" ]; then \
	  echo "$$out"; \
	  echo "rsa is compiled in now: RUSTSEC-2023-0071 may no longer be ignored (.cargo/audit.toml)"; \
	  exit 1; \
	fi

check: fmt clippy

fmt:
	cargo fmt --all -- --check

# The server build's packages.
SSR_PACKAGES := -p identity -p app -p server -p bare

# The two feature sets are checked separately: a workspace-wide run would unify them.
clippy: openssl
	cargo clippy $(SSR_PACKAGES) --features app/ssr --all-targets -- -D warnings
	cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

# The inner loop: what most changes break, in under two minutes on a warm tree. No browser
# build, no integration test, no install step but the test mail server's (the core's delivery
# tests send to it). The core's unit tests are the identity crate's (no Leptos to compile).
quick: fmt openssl smtp-sink
	cargo clippy $(SSR_PACKAGES) --features app/ssr --all-targets -- -D warnings
	cargo test -p identity

# The server's tests twice, beside one throwaway PostgreSQL cluster (a temporary folder, a
# free loopback port, stopped by its PID whatever happens): on SQLite (with the tests of several
# instances on PostgreSQL), then the same suite on PostgreSQL. The second pass skips what does
# not touch the chosen database (start-up refusals), what only SQLite has (`server backup`),
# and what the first pass just ran.
test-rust: openssl postgresql smtp-sink promtool
	cargo test -p identity
	cargo test -p app --features ssr
	AUTHAPP_REQUIRE_PG=1 scripts/pg-tmp.sh run sh -c '\
	  AUTHAPP_TEST_DB=sqlite cargo test -p server && \
	  echo "---- the server suite again, on PostgreSQL (AUTHAPP_TEST_DB=postgres)" && \
	  AUTHAPP_TEST_DB=postgres cargo test -p server --test api -- \
	    --skip instances:: --skip process::refuses_to_start --skip process::a_backup_taken'

# The deployable release: dist/server finds dist/site beside itself and is configured by the
# environment alone (README, "Deploying").
dist: tools
	cargo leptos build $(RELEASE_BUILD_FLAGS)
	rm -rf dist.tmp && mkdir -p dist.tmp
	cp target/release/server target/release/hash.txt dist.tmp/
	cp -r target/site dist.tmp/site
	cp deploy/Caddyfile deploy/authapp.service dist.tmp/
	rm -rf dist && mv dist.tmp dist
	@echo "dist/: $$(du -sh dist | cut -f1); serve it with: make serve-dist (README, Deploying)"

# The release folder served as in production, behind Caddy: https://127.0.0.1:8443
serve-dist: dist caddy smtp-sink
	deploy/serve-local.sh dist

# Every API endpoint fuzzed by schemathesis from the server's own OpenAPI document: the release
# server on a free loopback port, with no token, a valid one and a revoked one (fuzz/run.sh);
# on SQLite in development, then on a throwaway PostgreSQL cluster in production.
fuzz: dist fuzz-deps postgresql smtp-sink
	FUZZ_REQUIRE_PG=1 scripts/pg-tmp.sh run fuzz/run.sh dist/server

# Release build, served on a free loopback port with a fresh database, driven by Playwright.
# The https tests also start dist/server in production mode behind Caddy (end2end/global-setup.ts).
# The servers mail through a real SMTP server (smtp-sink: Debian's aiosmtpd) the tests read.
# Its log and how a run is judged: scripts/e2e.sh.
e2e: tools chromium caddy dist smtp-sink
	scripts/e2e.sh

# Lighthouse's four scores (mobile simulation, Debian's Chromium) for /, /login, /register and a
# signed-in /profile on the release build; fails below LIGHTHOUSE_MIN (100). Reports in
# target/lighthouse/; how a run is judged: scripts/lighthouse.sh.
lighthouse: tools chromium
	cargo leptos build $(RELEASE_BUILD_FLAGS)
	scripts/lighthouse.sh

# The same as a gate of `make test`, on the release build `make dist` made (fuzz needs it too):
# every score of every page 100, judged on the median of three runs. It runs before the browser
# tests so that the run ends with Playwright's summary.
lighthouse-gate: tools chromium dist
	LIGHTHOUSE_SERVER=dist/server LIGHTHOUSE_SITE=dist/site scripts/lighthouse.sh

# Benchmarks: the release server on a free loopback port, driven by wrk (Debian's package);
# its PostgreSQL cases beside a throwaway cluster.
wrk:
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }

bench: tools wrk postgresql smtp-sink
	cargo leptos build $(RELEASE_BUILD_FLAGS)
	cargo build --release -p bare
	scripts/pg-tmp.sh run python3 bench/run.py
