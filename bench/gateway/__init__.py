"""Gateway benchmarks: overhead against LiteLLM proxy, the load generator, the ledger, local models, profiles."""
