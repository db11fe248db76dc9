"""``skillmoe_ray_actors`` in a plain checkout: the repository's ``actors/`` folder under its installed name.

Installed (``pip install``, editable or not), ``actors/`` is the package ``skillmoe_ray_actors``
(pyproject.toml maps it), so no generic top-level ``actors`` lands beside other projects' packages.
Where the repository itself is the code, uninstalled (a Ray Job's uploaded working_dir,
``serve run jobs/serve_config.yaml`` from the root), this module stands in: its ``__path__`` makes it the
package whose submodules are ``actors/*.py``. It is not part of the wheel.
"""

import os

__path__ = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "actors")]
with open(os.path.join(__path__[0], "__init__.py"), encoding="utf-8") as _init:
    exec(compile(_init.read(), _init.name, "exec"))  # the package's own __init__ (its docstring and names)
