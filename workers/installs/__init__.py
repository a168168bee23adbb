"""MetaDeploy-style install work: enqueue, run a plan's steps, preflights, scratch orgs,
translations. :mod:`workers.installs.actors` binds them to the broker; the logic of
each lives in its own module and takes its database, settings and backend as
arguments, so it is tested without a broker."""
