"""Org backends: the protocol (:mod:`.protocol`), how one is loaded (:mod:`.loader`),
retries (:mod:`.retry`), running commands (:mod:`.commands`), and the local backend
(:mod:`.local`). ``TICKWORK_ORG_BACKEND`` names the class a worker uses."""
