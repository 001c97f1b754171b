"""`python -m router.lab`: the router's offline commands that need no gateway (`python -m router` too)."""

from contracts.environment import apply_environment_defaults

if __name__ == "__main__":
    apply_environment_defaults()  # before the lab imports libraries that read them at import

    from router.lab.cli import main

    main()
