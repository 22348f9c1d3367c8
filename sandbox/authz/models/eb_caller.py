"""What Elastic Beanstalk does with the caller's rights (filled in below)."""

from __future__ import annotations

from typing import Any

from ..checks import Checks


def create_environment(c: Checks, app: str, env: str) -> None:
    return None


def terminate_environment(c: Checks, env: Any) -> None:
    return None


def describe_environment_resources(c: Checks, env: Any) -> None:
    return None
