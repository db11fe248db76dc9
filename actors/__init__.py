"""The Ray layer: thin actors over the skillmoe_ray library.

- :class:`actors.expert.ExpertActor`: one per expert model, wraps an engine.
- :class:`actors.placement.PlacementScheduler`: which expert is active on which GPU slot, when.
- :class:`actors.driver.DriverActor`: runs the pipeline stages and owns the scheduler.
"""
