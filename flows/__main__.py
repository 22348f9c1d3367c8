"""`python -m flows ...`: the same as the `tomcat-fleet` command (see flows/cli.py)."""

from flows.cli import run

run()
