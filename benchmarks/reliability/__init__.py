"""Reliability under stress (`python -m benchmarks.reliability`): `config` (the run's
sizes and settings), `harness` (sandbox children, flow CLIs in subprocesses, resource
counts through the AWS API), `scenarios` (the throttle, hostile and crash experiments),
`report` (tables, verdict and `docs/reliability.md`), `__main__` (the CLI)."""
