"""`python -m router`: the lab's command line (router/lab/cli.py).

An entry point, not a serving module: nothing imports it, so its import of
router.lab does not make serving depend on the lab (tests/router/test_layers.py
exempts this one file by name). The process's environment defaults are applied
before anything else is imported, since some libraries read them at import.
"""

from contracts.environment import apply_environment_defaults

apply_environment_defaults()

from router.lab.cli import main  # noqa: E402  (after the defaults, on purpose)

main()
