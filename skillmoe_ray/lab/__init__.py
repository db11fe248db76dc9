"""The skill lab: a synthetic benchmark whose skills are real, and tiny expert models trained on them.

- :mod:`~skillmoe_ray.lab.world`: skills, tasks and the seeded question generator (data source ``lab``);
- :mod:`~skillmoe_ray.lab.tokenizer`: the word-level tokenizer every lab model shares;
- :mod:`~skillmoe_ray.lab.examples`: training examples, written with the pipeline's own prompts;
- :mod:`~skillmoe_ray.lab.train`: the training loop of one model;
- :mod:`~skillmoe_ray.lab.build`: recipes, their hashes, the shipped weights, trainings side by side;
- :mod:`~skillmoe_ray.lab.check`: what each trained model does on each skill.

``python -m skillmoe_ray.lab`` trains and checks them; ``+experiment=skill_lab`` runs the pipeline on them.
"""
