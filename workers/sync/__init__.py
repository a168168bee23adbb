"""Waldur-style sync: pull remote resources from a source into ``remote_resources``."""
