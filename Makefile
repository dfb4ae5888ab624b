# Sluice: two commands do all the set-up on a fresh machine — `make run` and `make test`.
SHELL := /bin/bash
JEST_RESULTS ?= .jest-results.json

.PHONY: run run-secure test build deps check typecheck lint format format-check unit int e2e faults bench bench-quick bench-cli clean

run: ## the whole stack on embedded defaults, plus a demo device (Ctrl-C stops it)
	@bash infra/dev/run-stack.sh

run-secure: ## `make run` with TLS everywhere and certificate identities (docs/security.md, "make run-secure")
	@bash infra/dev/run-stack-secure.sh

build: ## the compiled CLIs (dist/) and the console (console/dist/); esbuild, under a second
	@node infra/build/build.mjs

deps: ## npm packages and the Debian servers the suites start
	@bash infra/dev/ensure-deps.sh nats-server mosquitto postgresql sqlite3 python3 chromium openssl

test: deps build ## typecheck, lint, format check, then every suite against real servers
	@rm -f $(JEST_RESULTS)
	npx tsc --noEmit -p .
	npx tsc --noEmit -p console
	npx eslint --max-warnings 0 .
	npx depcruise --config .dependency-cruiser.cjs domain worker bridge projections api cli infra edge-agent bench tests
	npx prettier --check .
	npx jest --ci --forceExit --json --outputFile=$(JEST_RESULTS)

check: typecheck lint format-check

typecheck:
	npx tsc --noEmit -p .
	npx tsc --noEmit -p console
lint:
	npx eslint --max-warnings 0 .
format:
	npx prettier --write .
format-check:
	npx prettier --check .

unit:
	npx jest --selectProjects unit
int: deps
	npx jest --selectProjects int
e2e: deps
	npx jest --selectProjects e2e

FAULT_SEEDS ?= 3
faults: deps ## fault scenarios, long profile over FAULT_SEEDS seeds (a table; lost=0 duplicated=0), then the fuzz suites at 100k runs
	npx tsx tests/faults/run.ts --seeds $(FAULT_SEEDS) --summary .data/faults-summary.txt
	SLUICE_FUZZ_RUNS=100000 npx jest --ci --passWithNoTests --testPathPattern 'fuzz\.unit\.test\.ts$$'
	@tail -n 1 .data/faults-summary.txt

# Benchmarks: the pipeline and its raw baselines in one run (bench/run.ts); see docs/performance.md.
BENCH_OUT ?= .data/bench/latest.json
BENCH_QUICK_OUT ?= .data/bench/quick.json
BENCH_ARGS ?=
TSX := node --import ./node_modules/tsx/dist/loader.mjs

bench: deps ## full benchmark, both durability profiles (a few minutes); table, ratios, JSON in $(BENCH_OUT)
	@mkdir -p $(dir $(BENCH_OUT))
	$(TSX) bench/run.ts --out $(BENCH_OUT) $(BENCH_ARGS)

bench-quick: deps ## the same stages, small (under a minute on an idle 2-core machine)
	@mkdir -p $(dir $(BENCH_QUICK_OUT))
	$(TSX) bench/run.ts --quick --out $(BENCH_QUICK_OUT) $(BENCH_ARGS)

bench-cli: deps build ## start-to-exit time of the CLIs (median of 21 runs each); JSON in .data/bench/cli.json
	@mkdir -p .data/bench
	$(TSX) bench/cli-start.ts --out .data/bench/cli.json

clean:
	rm -rf .data coverage $(JEST_RESULTS)
