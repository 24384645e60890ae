"""Benchmarks for Postwerk. Run them from the repository root, e.g. `.venv/bin/python bench/send_api.py`."""
