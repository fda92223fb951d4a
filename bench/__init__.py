"""Benchmarks of collapse-sweep: measured as ratios within one run, never as timed tests."""
