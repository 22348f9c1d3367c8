"""`FleetError`: the root of the project's own exceptions (import it from `tasks.errors`).

It lives in blocks/, the lowest layer, so that blocks/ (which imports nothing from tasks/ or
flows/) can subclass it too. Plain: no Prefect, no boto3, nothing imported."""


class FleetError(Exception):
    """An error of tomcat-fleet's own (not a bug, not a library's): `except FleetError`
    catches every one; each subclass also keeps the stdlib base its callers catch."""
