"""Session-wide set-up shared by every test package."""

from contracts.environment import apply_environment_defaults

apply_environment_defaults()

# Fixtures for the request log's stores (a throwaway PostgreSQL database, a `request_log:` section
# per store), shared by the gateway tests that need them.
pytest_plugins = ["tests.gateway.requestlog_support"]
