"""tickwork: shared core (settings, errors, secret scrubbing) used by every role.

The roles live in their own top-level packages: ``producers`` sends work,
``workers`` consumes it, ``schema`` stores it.
"""

__version__ = "0.1.0"
