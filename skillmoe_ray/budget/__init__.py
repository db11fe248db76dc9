"""Budgeted expert assignment (USMoE style): recruitment as one optimization over the whole batch."""
