"""Built-in jobs, one module per domain. :data:`workers.app.BUILT_IN_JOB_MODULES` lists
them; importing a module declares its jobs (see :mod:`workers.registry`)."""
