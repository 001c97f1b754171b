"""Test-time-compute strategy benchmarks on recorded samples: replay, live (cross-fitted) and transfer."""
