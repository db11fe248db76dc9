"""skillmoe-ray: skill-based routing of reasoning questions across a pool of expert LLMs, on Ray.

The package holds the pure library (data, skills, profiles, recruitment, planning, aggregation,
engines). The Ray layer lives in the top-level ``actors`` package; the Hydra entry point is
``python -m skillmoe_ray.run``.
"""

__version__ = "0.1.0"
