"""Sandbox configuration: one validated model for the CLI, the context manager and tests.

Every knob the sandbox exposes lives here, with its unit in the name or the docstring.
Validation errors name the field and say how to fix it; the CLI turns them into one line.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

import sandbox.accounts as accounts

FAULT_PROFILES: dict[str, dict[str, float]] = {
    # rates are probabilities; slow_factor multiplies install latency on slow hosts
    "clean": {
        "install_failure": 0.0,
        "ssh_drop": 0.0,
        "slow_host": 0.0,
        "never_boot": 0.0,
        "slow_factor": 1.0,
    },
    "flaky": {
        "install_failure": 0.10,
        "ssh_drop": 0.03,
        "slow_host": 0.10,
        "never_boot": 0.0,
        "slow_factor": 3.0,
    },
    "hostile": {
        "install_failure": 0.25,
        "ssh_drop": 0.08,
        "slow_host": 0.20,
        "never_boot": 0.05,
        "slow_factor": 5.0,
    },
}


class FaultRates(BaseModel):
    """Probabilities of injected faults, decided per host (boot, slowness) or per command."""

    install_failure: float = Field(0.0, ge=0.0, le=1.0)
    ssh_drop: float = Field(0.0, ge=0.0, le=1.0)
    slow_host: float = Field(0.0, ge=0.0, le=1.0)
    never_boot: float = Field(0.0, ge=0.0, le=1.0)
    slow_factor: float = Field(1.0, ge=1.0)

    @classmethod
    def profile(cls, name: str) -> FaultRates:
        if name not in FAULT_PROFILES:
            raise ValueError(
                f"unknown fault profile {name!r}; choose one of {', '.join(FAULT_PROFILES)}"
            )
        return cls(**FAULT_PROFILES[name])


class SandboxConfig(BaseModel):
    """Everything that shapes one sandbox. Defaults give a fast, fault-free sandbox."""

    model_config = {"extra": "forbid"}

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="AWS API port; 0 picks a free one")
    ssh_port: int = Field(0, ge=0, le=65535, description="SSH port on every host; 0 picks one")
    dns_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="DNS (UDP and TCP) answering every name the sandbox serves; 0 picks one",
    )
    region: str = "us-east-1"
    public_ip_cidr: str = "127.100.0.0/16"
    service_ip_cidr: str = "127.101.0.0/16"
    controller_cidr: str = Field(
        "198.51.100.10/32",
        description="the public address the controller's connections are seen from",
    )
    install_latency: float = Field(0.5, ge=0.0, description="seconds to install+start tomcat9")
    latency_jitter: float = Field(0.2, ge=0.0, le=1.0, description="fraction of +/- jitter")
    boot_delay: float = Field(0.5, ge=0.0, description="seconds from launch to SSH reachable")
    cloud_init_seconds: float = Field(
        0.3, ge=0.0, description="seconds after boot while cloud-init runs and holds dpkg lock"
    )
    drop_hold_seconds: float = Field(
        20.0, gt=0.0, description="how long a connection denied by a security group is held"
    )
    health_check_interval: float = Field(1.0, gt=0.0, description="seconds between ALB checks")
    eb_launch_seconds: float = Field(2.0, ge=0.0)
    rds_create_seconds: float = Field(2.0, ge=0.0)
    seed: int = 0
    fault_profile: str = "clean"
    faults: FaultRates | None = None
    throttle_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="fraction of EC2 calls refused (a fault knob)"
    )
    token_buckets: bool = Field(
        True, description="AWS's API token buckets (EC2, ELB, Route 53); False turns them off"
    )
    mutate_bucket_size: float = Field(50.0, ge=0.0, description="EC2 mutating; 0: unlimited")
    mutate_refill_per_s: float = Field(5.0, gt=0.0)
    describe_bucket_size: float = Field(100.0, ge=0.0, description="EC2 describe; 0: unlimited")
    describe_refill_per_s: float = Field(20.0, gt=0.0)
    run_instances_bucket_size: float = Field(5.0, ge=0.0, description="0: unlimited")
    run_instances_refill_per_s: float = Field(2.0, gt=0.0)
    lb_port_base: int | None = Field(
        None,
        ge=1024,
        le=64000,
        description="load-balancer listeners below 1024 listen at base+port (80 -> base+80); "
        "None: the real port when this process may bind it, else 8000+port",
    )
    hosted_zone: str = Field("sandbox.example.com", description="Route53 zone created at start")
    ssh_user: str | None = Field(
        None,
        description="the one SSH login user every host accepts; None: the user of the image "
        "it was launched from (ubuntu on Ubuntu, ec2-user on Amazon Linux 2023), as on AWS",
    )
    enforce_iam: bool = Field(
        True,
        description="IAM access control: the env file's keys are an operator user holding "
        "exactly docs/iam-policy.json; False allows every call (--no-enforce-iam)",
    )
    account_profile: str = Field(
        "fresh",
        description="what the account holds at start: fresh (empty) or busy (SSO roles, "
        "another deployment's estate, foreign IAM, instances, zones and records; "
        "sandbox/accounts.py)",
    )
    operator_policy_path: str | None = Field(
        None,
        description="the IAM policy file the operator user holds; None: the shipped "
        "docs/iam-policy.json (tests give a narrower one to see what AWS would refuse)",
    )
    state_dir: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "warning"

    @field_validator("fault_profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        FaultRates.profile(v)
        return v

    @field_validator("account_profile")
    @classmethod
    def _known_account_profile(cls, v: str) -> str:
        return accounts.check(v)

    @field_validator("public_ip_cidr", "service_ip_cidr")
    @classmethod
    def _loopback(cls, v: str) -> str:
        net = ipaddress.ip_network(v, strict=False)
        if not net.subnet_of(ipaddress.ip_network("127.0.0.0/8")):  # type: ignore[arg-type]
            raise ValueError(f"{v} is not inside 127.0.0.0/8; use a loopback range")
        return str(net)

    @field_validator("controller_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        return str(ipaddress.ip_network(v, strict=False))

    @model_validator(mode="after")
    def _ports_differ(self) -> SandboxConfig:
        if self.port and self.port == self.ssh_port:
            raise ValueError("port and ssh_port must differ")
        return self

    @property
    def fault_rates(self) -> FaultRates:
        return self.faults or FaultRates.profile(self.fault_profile)

    @property
    def controller_ip(self) -> str:
        return str(ipaddress.ip_network(self.controller_cidr).network_address)
