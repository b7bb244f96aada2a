"""Benchmarks (not tests): run one with `.venv/bin/python -m bench.NAME`."""
