"""AWS access: the retrying client and one module per service."""

from .client import Aws

__all__ = ["Aws"]
