"""The project's one exception root, `FleetError`: every exception class defined under
flows/, tasks/ and blocks/ subclasses it (tests/unit/tasks/test_fleet_error.py). A subclass keeps
the stdlib base its callers catch (`class PlanError(FleetError, ValueError)`).

Defined in blocks/fleet_error.py so that blocks/, the lowest layer, can subclass it without
importing tasks/; the rest of the project imports it from here."""

from blocks.fleet_error import FleetError

__all__ = ["FleetError", "StageError"]


class StageError(FleetError, RuntimeError):
    """A stage could not do its work; the message says what and how to fix it (also
    importable from tasks.aws.cleanup and tasks.aws.ec2, where it was first defined)."""
