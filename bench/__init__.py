"""Benchmarks (pytest-benchmark): `pytest bench`, or `python -m bench.report` for a Markdown + PNG report."""
