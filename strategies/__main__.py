"""`python -m strategies ...`: the app the gateway mounts as `ttc strategies`, without live models.

An entry point, never imported by serving code: the one runtime-level module
allowed to reach into :mod:`strategies.lab`. The process's environment defaults
are applied before the lab is imported, since some libraries read them at import.
"""

from contracts.environment import apply_environment_defaults

apply_environment_defaults()

from .lab.cli import NoLiveModels, make_app  # noqa: E402  (after the defaults, on purpose)

make_app(NoLiveModels())()
