"""Cross-cutting behaviour of every actor, one middleware per concern."""
