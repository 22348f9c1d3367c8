"""Typed data that crosses stage, task and process boundaries (plain, picklable pydantic).

Nothing here holds a client, a socket or a secret: chunk tasks receive these and build
their own boto3/paramiko clients inside the worker process.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Instance(BaseModel):
    """One launched EC2 instance as the install stage needs it."""

    instance_id: str
    public_ip: str
    private_ip: str | None = None
    security_groups: list[str] = Field(default_factory=list)


class StepTiming(BaseModel):
    name: str
    seconds: float
    exit_status: int | None  # None: the step never got an exit status (connection lost)


HostStatus = Literal["installed", "failed"]


class HostResult(BaseModel):
    """How one host ended. `reason` is set whenever status is `failed`."""

    instance_id: str
    public_ip: str
    status: HostStatus
    reason: str | None = None
    attempts: int = 0
    already_installed: bool = False
    seconds: float = 0.0
    steps: list[StepTiming] = Field(default_factory=list)
    stderr_tail: str = ""


class ResourceSample(BaseModel):
    """Memory, swap and CPU at one moment (host-wide, like the seed's psutil samples)."""

    label: str
    at_s: float  # seconds since the sampler started
    ram_used_mb: float
    ram_available_mb: float
    swap_used_mb: float
    cpu_percent: list[float]  # per core


class ChunkResult(BaseModel):
    index: int
    pid: int
    log_file: str
    seconds: float
    hosts: list[HostResult]
    samples: list[ResourceSample] = Field(default_factory=list)
    throttle_retries: int = 0
    api_calls: int = 0
    ended_at: float = 0.0  # wall clock (time.time()) when the chunk's last host ended


class InstallSummary(BaseModel):
    """What the install stage did, host by host, and the shape it ran with."""

    hosts: int
    installed: int
    failed: int
    already_installed: int
    install_s: float
    chunk_size: int
    max_workers: int
    desired_count: int
    total_chunks: int
    runner: str
    api_calls: int = 0
    throttle_retries: int = 0
    aggregate_log: str = ""
    results: list[HostResult] = Field(default_factory=list)

    @property
    def failed_hosts(self) -> list[HostResult]:
        return [r for r in self.results if r.status == "failed"]
