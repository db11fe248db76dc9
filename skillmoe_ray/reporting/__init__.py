"""What a run reports: evaluation, statistics, comparison tables, artifacts, report, plots, W&B."""
