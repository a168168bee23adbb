"""Prometheus metrics: per job, scheduler, queues; multiprocess set-up and exposition."""
