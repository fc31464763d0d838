"""Benchmarks (`make bench`): figures and ratios of implementations measured in the same run."""
