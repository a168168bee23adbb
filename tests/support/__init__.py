"""What tests of every layer share: waiting, processes, the system under test, test jobs."""
