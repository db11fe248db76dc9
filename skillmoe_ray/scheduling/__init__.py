"""Scheduling generation on GPU slots: grouping work by expert, the executor, residency, handles."""
