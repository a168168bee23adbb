"""What sends work: message contracts, the client API for services, the admin API, the CLI."""
