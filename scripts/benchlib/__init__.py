"""Pieces of ``scripts/bench.py``: measuring child processes, building and
publishing workloads, the registry of comparisons, and the report."""
