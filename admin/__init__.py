"""The operator's front end: CLI, admin API and web page, checks, the embedded runner."""
