# The short commands a person types. Everything installs itself on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
EXT_STAMP := $(VENV)/.ext-built
RUST_SRC := $(shell find rust -name '*.rs' -o -name Cargo.toml) Cargo.toml Cargo.lock pyproject.toml

.PHONY: all setup build test test-rust test-py lint fmt run bench bench-decode bench-engine bench-writer bench-queries bench-e2e clean

all: test

$(VENV)/.deps: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.deps

# The extension is built once, in the release profile, and shared by every test.
$(EXT_STAMP): $(VENV)/.deps $(RUST_SRC)
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release
	touch $@

build: $(EXT_STAMP)

test-rust:
	cargo test --release -p ingestor-core

lint: $(VENV)/.deps
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches

fmt: $(VENV)/.deps
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches
	$(VENV)/bin/ruff check --fix python tests benches

test-py: build
	$(PY) -m pytest -q

test: build test-rust lint test-py

bench-decode: build
	$(PY) benches/bench_decode.py

bench-engine: build
	$(PY) benches/bench_engine.py --idle 100,1000,10000

# A commit to the DuckDB store against a plain insert; writes benches/results/writer.md.
bench-writer: build
	$(PY) benches/bench_writer.py

# The shipped queries against plain SQL over the raw history, on stores of 10M and 100M
# position rows built through the store's write path and cached in benches/.cache/queries;
# writes benches/results/queries.md and .json, then times `ingestor report` on the same stores
# (benches/results/report.md; `bench_queries.py --report` does that alone). `--sizes 1M` for a
# quick check.
bench-queries: build
	$(PY) benches/bench_queries.py

$(VENV)/.bench-deps: requirements-bench.txt $(VENV)/.deps
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

# End to end against the pure-Python pipelines; writes benches/results/e2e.md and e2e.png.
bench-e2e: build $(VENV)/.bench-deps
	$(PY) benches/bench_e2e.py

bench: bench-decode bench-engine bench-writer bench-e2e

# The demo: 50 simulated accounts on the built-in exchange for 30 s (Ctrl-C stops sooner and
# still drains), then the latest positions and balances, and the report (run/report.html, its
# path printed). Files land in ./run/.
run: build
	mkdir -p run && rm -rf run/capture.duckdb run/capture.hot run/capture.spool run/truth.json \
		run/report.html
	cd run && ../$(PY) -m ingestor --accounts ../examples/sim.yaml --duration 30 \
		--store capture.duckdb; \
	../$(PY) -m ingestor query latest-positions --store capture.duckdb --limit 40; \
	../$(PY) -m ingestor query latest-wallets --store capture.duckdb --limit 40; \
	../$(PY) -m ingestor report --store capture.duckdb --out report.html

clean:
	rm -rf $(VENV) target run python/ingestor/_core*.so
