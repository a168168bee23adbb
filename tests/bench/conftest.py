"""Benchmarks print figures; they never assert on time (shared machines flake)."""
