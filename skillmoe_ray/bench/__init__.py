"""Benchmarks, each runnable as ``python -m skillmoe_ray.bench.<name>``; none of them is a test."""
