"""`python -m flows ...`: the same as the `tomcat-fleet` command (see tasks/cli/)."""

from tasks.cli.app import run

run()
