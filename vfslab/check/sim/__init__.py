"""The sim family: simulated workloads searched for deadlocks, and simulated verdicts checked against real
mounts."""
