"""AWS access: the retrying client and one module per service.

`Aws` is imported on first use (`from tasks.aws import Aws` still works): importing a
submodule for a pure helper does not load boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Aws

__all__ = ["Aws"]


def __getattr__(name: str) -> Any:
    if name == "Aws":
        from .client import Aws

        return Aws
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
