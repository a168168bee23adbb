"""The scheduler: schedule parsing, the periodiq tick, exactly-once dispatch, controls."""
