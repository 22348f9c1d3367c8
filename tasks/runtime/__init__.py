"""What CLIs and the local start need around flows: the Prefect API, the local start,
outcomes, the sandbox child."""
