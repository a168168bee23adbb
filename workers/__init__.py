"""What consumes work: broker setup, middleware, job actors, the scheduler.

Job modules declare jobs with :func:`workers.registry.job`; :mod:`workers.app`
binds them to the configured broker.
"""
