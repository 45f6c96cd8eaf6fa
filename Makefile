.PHONY: setup demo test bench clean
PY := .venv/bin/python

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(PY) examples/ab_click/generate.py --if-missing
	.venv/bin/mrp run specs/ab_click.toml

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/bench_ab.py

clean:
	rm -rf .venv runs .pytest_cache
