"""The Symbolic-MoE method and its baselines: skills, profiles, recruitment, aggregation, steering."""
