"""`FleetError`: the root of the project's own exceptions (import it from `tasks.errors`).

It lives in blocks/, the lowest layer, so that blocks/ (which imports nothing from tasks/ or
flows/) can subclass it too. Plain: no Prefect, no boto3; the standard library's logging only.

`quiet_tracebacks()`: an error whose class sets `one_line` (its message is the whole
story: a missing credentials block naming the command that creates it, a flow that failed
with its report) is logged by Prefect's run and engine loggers without its traceback.
"""

import logging


class FleetError(Exception):
    """An error of tomcat-fleet's own (not a bug, not a library's): `except FleetError`
    catches every one; each subclass also keeps the stdlib base its callers catch."""

    one_line: bool = False  # True: logged without a traceback (see `quiet_tracebacks`)


class BlockNotFound(FleetError, LookupError):
    """A named block is not on the Prefect API: one line saying how to create it (logged
    without Prefect's traceback, wherever a flow or task run it ends is logged). Here,
    not in blocks/aws_credentials.py (which imports prefect-aws, about 0.35 s), so that
    the flows catch it without importing prefect-aws."""

    one_line = True


# where Prefect logs an exception that ends a task run, a flow run or a worker's flow process
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine")


class OneLineFilter(logging.Filter):
    """Drops the traceback of a record whose exception is a `one_line` error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if getattr(exc, "one_line", False):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_tracebacks() -> None:
    """Install `OneLineFilter` on Prefect's run and engine loggers (once per process)."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineFilter) for f in logger.filters):
            logger.addFilter(OneLineFilter())
