"""The Ray layer: thin actors over the skillmoe_ray library.

- :class:`skillmoe_ray_actors.expert.ExpertActor`: one per expert model, wraps an engine.
- :class:`skillmoe_ray_actors.placement.PlacementScheduler`: which expert is active on which GPU slot, when.
- :class:`skillmoe_ray_actors.driver.DriverActor`: runs the pipeline stages and owns the scheduler.
"""
