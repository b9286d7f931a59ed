# Shortcuts for the scripts in scripts/ (the README gives the scripts, which need only bash).
.PHONY: setup demo test default-model bench
setup:
	bash scripts/setup.sh
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
default-model:
	bash scripts/build_default_model.sh
bench:
	for b in benchmarks/bench_*.py; do .venv/bin/python $$b || exit 1; done
