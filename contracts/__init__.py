"""Contracts shared by `gateway`, `router` and `strategies`, which may not import each other
(`router` and `strategies`) or upward (`gateway`): one home for what all three must agree on."""
