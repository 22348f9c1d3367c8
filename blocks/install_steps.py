"""One remote command of the install recipe (configuration: FleetSettings holds the list)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class InstallStep(BaseModel):
    """One remote command of the install recipe. `transient_markers`: stderr fragments that
    mean "try again later" (a held dpkg lock, a failed mirror fetch)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    command: str = Field(min_length=1)
    timeout_s: float = Field(600.0, gt=0, allow_inf_nan=False)
    transient_markers: list[str] = Field(default_factory=list)
