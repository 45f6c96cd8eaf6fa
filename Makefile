.PHONY: setup demo test check lint docs bench clean
PY := .venv/bin/python
# bytecode caches: the environment may forbid writing them, which makes every pytest worker and CLI call recompile our modules and re-rewrite the tests
unexport PYTHONDONTWRITEBYTECODE

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(PY) examples/ab_click/generate.py --if-missing
	.venv/bin/mrp run specs/ab_click.toml
	@echo "the simulated truth (examples/ab_click/generate.py) beside the estimates:"
	@$(PY) examples/ab_click/generate.py --truth-vs runs/ab-click

test: setup
	$(PY) -m pytest -q -n auto --durations=30 tests

# the quick loop: lint and the tests that do not sample (under a minute)
check: setup lint
	$(PY) -m pytest -q -n auto --dist worksteal -m "not slow" --hypothesis-profile=quick tests

lint: setup
	.venv/bin/ruff check mrp_formula tests benchmarks examples scripts

# regenerate the generated files: the JSON Schema and the key reference
docs: setup
	.venv/bin/mrp schema -o mrp_formula/mrp-spec.schema.json
	$(PY) -m mrp_formula.spec.schema --markdown docs/spec.md

bench: setup
	$(PY) benchmarks/bench_ab.py
	$(PY) benchmarks/bench_batch.py
	$(PY) benchmarks/bench_mrp.py

clean:
	rm -rf .venv runs .pytest_cache
