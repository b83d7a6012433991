"""Benchmarks (`scripts/bench*`, `make bench`): they measure the product from outside and the product
never imports them (tests/foundation/test_layout.py checks that)."""
