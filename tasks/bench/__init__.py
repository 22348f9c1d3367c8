"""Benchmark machinery: the scenario matrix, running scenarios in child processes,
the seed/floor child, CSV/plot/report."""
