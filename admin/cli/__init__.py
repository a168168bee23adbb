"""The ``tickwork`` command line.

Imports inside commands: each command imports what it needs when it runs, so that
``tickwork --help`` or ``tickwork schedule explain`` does not load the broker, the
worker runtime and the web stack (about half of the CLI's start-up time). Each module
that does this says so in its docstring (``tests/unit/test_layout.py`` checks it).
"""
