"""segwatch benchmarks (not shipped; see bench/RESULTS.md). `python bench/run_all.py` runs them all."""
