"""mode=plan: the cost model, the schedule simulator, workloads and measured figures."""
