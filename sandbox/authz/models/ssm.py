"""SSM: parameters (the public AMI parameters have no account in their ARN)."""

from __future__ import annotations

from ..checks import Checks


def get_parameter(c: Checks) -> None:
    names = c.call.params.get("Names") or [c.call.params.get("Name", "")]
    for name in names:
        public = name.startswith("/aws/service/")
        arn = f"arn:{c.call.partition}:ssm:{c.call.region}:{'' if public else c.call.account}:"
        c.add("parameter", arn + f"parameter/{name.lstrip('/')}")


MODELS = {"GetParameter": get_parameter, "GetParameters": get_parameter}
