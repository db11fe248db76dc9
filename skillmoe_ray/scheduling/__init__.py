"""Scheduling generation on GPU slots: grouping work by expert, the executor, its slot state and
policy, the timeline, residency, handles."""
