"""Session-wide set-up shared by every test package."""

from contracts.environment import apply_environment_defaults

apply_environment_defaults()
