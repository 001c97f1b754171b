"""Router benchmarks: held-out quality over seeded splits, decision latency, the cascade replay."""
