"""Typed inputs and results of the `deploy` stages (plain pydantic, no clients, no secrets)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tasks.models import HostResult, Instance


class DeployRequest(BaseModel):
    """The deploy flow's parameters that stages use beyond the settings (stage 1 the count,
    stage 2 the install's knobs and the settings overrides its subflow takes)."""

    instances: int
    chunk_size: int | None = None
    max_workers: int | None = None
    desired_count: int | None = None
    runner: str = "process"
    allow_failures: str = "0"
    settings_overrides: dict[str, Any] = Field(default_factory=dict)


class LaunchResult(BaseModel):
    instances: list[Instance]
    security_group_id: str
    key_name: str
    created: int = 0  # instances this run launched (0 when they already existed)


class SavedInstall(BaseModel):
    """Stage 2's result when it is not run: the statuses the last install saved (installed
    and failed hosts; the others were never installed)."""

    path: str
    results: list[HostResult]


class InventoryResult(BaseModel):
    path: str
    instances: list[Instance]  # the installed hosts: what the stages after 3 use
    security_group_ids: list[str]
    status: dict[str, str] = Field(default_factory=dict)  # every launched host's install status


class AlbResult(BaseModel):
    load_balancer_arn: str
    dns_name: str
    security_group_id: str
    target_group_arn: str
    http_listener_arn: str
    registered: list[str] = Field(default_factory=list)  # instance ids
    healthy: int = 0
    access_log_bucket: str = ""
    url: str = ""


class TlsResult(BaseModel):
    certificate_arn: str
    domain: str
    https_listener_arn: str
    hosted_zone_id: str
    url: str


class TrafficResult(BaseModel):
    """What a traffic generator saw: answers per scheme and distinct backends answering."""

    target: str
    requests: int
    ok: int
    distinct_backends: int = 0
    by_scheme: dict[str, dict[str, int]] = Field(default_factory=dict)
    generator_instance_id: str = ""


class BeanstalkResult(BaseModel):
    application: str
    environment: str
    cname: str
    load_balancer_arn: str
    instance_profile: str
    role: str
    service_role: str = ""  # the role Elastic Beanstalk assumes (ServiceRole option)


class RdsResult(BaseModel):
    db_instance_id: str
    endpoint: str
    port: int
    security_group_id: str
    master_username: str
    password_secret_block: str  # where the password lives; never the password itself


class JumphostResult(BaseModel):
    instance_id: str
    public_ip: str
    security_group_id: str
    select_1: str  # what `SELECT 1` printed through the jumphost
