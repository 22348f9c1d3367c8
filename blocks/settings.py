"""Project settings from the environment / `.env` (prefix `TOMCAT_FLEET_`).

The sandbox's env file sets the same variables, so the code never asks "am I on the
sandbox?": it reads an endpoint URL, an SSH port and where its public address comes from.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from blocks.install_steps import InstallStep
from blocks.recipes import DEFAULT_RECIPE, RECIPES, UBUNTU_2204, Recipe, RecipeName

# the Ubuntu recipe's steps and probe, under their former names
DEFAULT_INSTALL_STEPS: list[InstallStep] = list(UBUNTU_2204.install_steps)
DEFAULT_PROBE = UBUNTU_2204.probe_command
# settings a recipe fills in when they are not set (None or empty)
_FROM_RECIPE = ("ssh_user", "install_steps", "probe_command")


class FleetSettings(BaseSettings):
    """Where AWS is, how to reach hosts, and what to run on them."""

    model_config = SettingsConfigDict(
        env_prefix="TOMCAT_FLEET_", env_file=".env", extra="ignore", validate_default=True
    )

    # AWS
    region: str = Field("us-east-1", description="AWS region everything is created in")
    aws_endpoint_url: str | None = Field(None, description="set for the sandbox; None on AWS")
    aws_credentials_block: str | None = Field(
        None, description="name of a prefect-aws AwsCredentials block; None: default chain"
    )
    deployment_name: str = Field(
        "tomcat-fleet",
        pattern=r"^[a-z0-9][a-z0-9-]{0,40}$",
        description="names and tags every resource (tag tomcat-fleet:deployment); teardown "
        "deletes what carries it",
    )
    recipe: RecipeName = Field(
        DEFAULT_RECIPE,
        description="the hosts' operating system and install recipe: ubuntu-22.04 (tomcat9 "
        "from apt, user ubuntu) or al2023 (Amazon Linux 2023, tomcat10 from dnf, user "
        "ec2-user); it sets the AMI, SSH user, install steps and probe not set here "
        "(docs/recipes.md)",
    )
    ami_id: str | None = Field(
        None,
        description="AMI to launch; None: the region's current image of the recipe, from its "
        "SSM public parameter (ubuntu-22.04: /aws/service/canonical/ubuntu/server/22.04/stable/"
        "current/amd64/hvm/ebs-gp2/ami-id, al2023: /aws/service/ami-amazon-linux-latest/"
        "al2023-ami-kernel-default-x86_64)",
    )
    instance_type: str = Field("t3.small", description="EC2 instance type of the web hosts")
    key_name: str = Field("", description="EC2 key pair name; default: the deployment name")
    controller_ip_url: str = Field(
        "https://checkip.amazonaws.com",
        description="URL answering with this machine's public IP (the default ingress CIDR)",
    )
    aws_retries: int = Field(
        8, ge=0, le=100, description="retries per AWS call (throttling, 5xx, dropped connections)"
    )
    aws_backoff_base_s: float = Field(
        0.5, gt=0, allow_inf_nan=False, description="first back-off sleep (seconds), doubling"
    )
    aws_backoff_cap_s: float = Field(
        20.0, gt=0, allow_inf_nan=False, description="no back-off sleep exceeds this"
    )
    ingress_cidr: str | None = Field(
        None, description="CIDR allowed to SSH in; None: the controller's own address /32"
    )
    ingress_ports: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [22, 80, 8080],
        description="a JSON list or comma-separated ports (TOMCAT_FLEET_INGRESS_PORTS=22,8080)",
    )

    # the web estate (deploy stages 4-11)
    hosted_zone: str | None = Field(
        None, description="Route53 public zone the domain lives in (the sandbox creates one)"
    )
    domain: str | None = Field(None, description="HTTPS name; default www.<hosted_zone>")
    eb_domain: str | None = Field(None, description="HTTPS name for Beanstalk; eb.<zone>")
    db_instance_class: str = Field("db.t3.micro", description="RDS instance class (stage 8)")
    db_engine: str = Field("mysql", description="RDS engine (stage 8)")
    db_master_username: str = Field("admin", description="RDS master user name")
    db_password_block: str | None = Field(
        None,
        description="Prefect Secret block holding the RDS password; default "
        "<deployment>-rds-password (created with a generated password if missing)",
    )
    eb_solution_stack: str | None = Field(None, description="None: newest Tomcat stack")
    deregistration_delay_s: int = Field(
        300,
        ge=0,
        le=3600,
        description="seconds a target deregistered from the ALB's target group drains before "
        "it is gone (the group's deregistration delay; a rollout waits for it per wave)",
    )
    traffic_requests: int = Field(
        60, ge=1, le=10000, description="requests per traffic check (stages 6, 10, 11)"
    )

    # SSH
    ssh_port: int = Field(22, ge=1, le=65535, description="SSH port of the hosts")
    ssh_user: str = Field(
        "", description="SSH login user of the hosts; empty: the recipe's (ubuntu, ec2-user)"
    )
    ssh_key_file: str | None = Field(
        None, description="private key file; None: <state_dir>/<deployment>/<key_name>.pem"
    )
    ssh_key_block: str | None = Field(None, description="name of a Prefect Secret block")
    host_key_policy: Literal["strict", "tofu", "insecure"] = Field(
        "tofu",
        description="strict: fingerprints from the console output; tofu: the first key "
        "seen per instance is kept in known_hosts; insecure: any key",
    )
    state_dir: str = Field(
        ".tomcat-fleet", description="key file, known_hosts and inventory, per deployment"
    )
    ssh_connect_timeout_s: float = Field(
        10.0, gt=0, allow_inf_nan=False, description="timeout of one SSH connection attempt"
    )
    ssh_wait_s: float = Field(
        300.0, gt=0, allow_inf_nan=False, description="how long a host may take to boot"
    )
    host_attempts: int = Field(3, ge=1, le=20, description="install attempts per host")

    # what runs on each host
    install_steps: Annotated[list[InstallStep], NoDecode] = Field(
        default_factory=list,
        min_length=1,
        description="JSON list of steps; unset: the recipe's; an empty list would report "
        "hosts installed without installing anything",
    )
    probe_command: str = Field(
        "",
        description="a host answering 0 to this is already installed; empty: the recipe's",
    )

    # where logs go
    log_dir: str = Field("logs", description="per-chunk logs and aggregate.log")
    ca_bundle: str | None = Field(
        None, description="CA file trusted for HTTPS checks (the sandbox's CA); None: system"
    )

    @model_validator(mode="before")
    @classmethod
    def _recipe_fills_in(cls, data: Any) -> Any:
        """What is not set comes from the recipe, once, here (an unknown recipe fails its
        field's own check, which names the allowed ones, and nothing else)."""
        if not isinstance(data, dict):
            return data
        chosen = RECIPES.get(str(data.get("recipe") or DEFAULT_RECIPE), UBUNTU_2204)
        data = dict(data)
        for name in _FROM_RECIPE:
            if data.get(name) in (None, ""):
                value = getattr(chosen, name)
                data[name] = list(value) if isinstance(value, tuple) else value
        return data

    @field_validator("install_steps", mode="before")
    @classmethod
    def _steps_json(cls, v: Any) -> Any:
        """From the environment the steps are JSON; a decoding error names this field
        (pydantic-settings would raise a SettingsError of its own)."""
        if isinstance(v, str | bytes):
            try:
                return json.loads(v)
            except ValueError as exc:
                raise ValueError(f"install_steps is not valid JSON: {exc}") from None
        return v

    @field_validator("ingress_ports", mode="before")
    @classmethod
    def _ports_text(cls, v: Any) -> Any:
        """A JSON list ("[22, 8080]") or comma-separated ports ("22,8080")."""
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"ingress_ports is not valid JSON: {exc}") from None
            return [p.strip() for p in text.split(",") if p.strip()]
        return v

    @field_validator("deployment_name")
    @classmethod
    def _aws_safe_name(cls, v: str) -> str:
        """The name prefixes RDS (`<name>-db`), S3 and Beanstalk names: AWS wants a letter
        first and no "--" in RDS identifiers, and S3 refuses names starting "xn--"."""
        if not v[:1].isalpha():
            raise ValueError(f"deployment_name={v!r} must start with a letter (RDS identifiers)")
        if "--" in v or v.endswith("-"):
            raise ValueError(
                f"deployment_name={v!r} must not contain '--' or end with '-' (RDS identifiers)"
            )
        return v

    @field_validator("ingress_cidr")
    @classmethod
    def _cidr(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            return str(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"ingress_cidr={v!r} is not a CIDR such as 203.0.113.7/32") from None

    @field_validator("ingress_ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        bad = [p for p in v if not 1 <= p <= 65535]
        if bad:
            raise ValueError(f"ports must be 1-65535, got {bad}")
        return sorted(set(v))

    @model_validator(mode="after")
    def _key_source(self) -> FleetSettings:
        if not self.key_name:
            self.key_name = self.deployment_name
        if self.ssh_key_file and self.ssh_key_block:
            raise ValueError("set ssh_key_file or ssh_key_block, not both")
        return self

    @property
    def os_recipe(self) -> Recipe:
        """The recipe named by `recipe` (its AMI parameter, Tomcat service, MySQL client)."""
        return RECIPES[self.recipe]

    @property
    def web_domain(self) -> str:
        if self.domain:
            return self.domain.rstrip(".").lower()
        if not self.hosted_zone:
            raise ValueError("set TOMCAT_FLEET_HOSTED_ZONE (or TOMCAT_FLEET_DOMAIN)")
        return f"www.{self.hosted_zone.rstrip('.').lower()}"

    @property
    def beanstalk_domain(self) -> str:
        if self.eb_domain:
            return self.eb_domain.rstrip(".").lower()
        if not self.hosted_zone:
            raise ValueError("set TOMCAT_FLEET_HOSTED_ZONE (or TOMCAT_FLEET_EB_DOMAIN)")
        return f"eb.{self.hosted_zone.rstrip('.').lower()}"

    @property
    def password_block(self) -> str:
        return self.db_password_block or f"{self.deployment_name}-rds-password"

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.state_dir) / self.deployment_name / "known_hosts"

    def key_file_path(self) -> Path:
        """Where the deployment's private key lives when it comes from a file."""
        if self.ssh_key_file:
            return Path(self.ssh_key_file)
        return Path(self.state_dir) / self.deployment_name / f"{self.key_name}.pem"


class RuntimeSettings(BaseSettings):
    """How this machine runs the flows: the CLI's Prefect server, the local start, the process
    pool's workers, the sandbox's state endpoint (same prefix and `.env` as FleetSettings).

    Apart from FleetSettings: the CLI reads these before it validates a flow's settings (it
    plans its Prefect server first) and must read them when a fleet setting is invalid."""

    model_config = SettingsConfigDict(
        env_prefix="TOMCAT_FLEET_",
        env_file=".env",
        extra="ignore",
        env_ignore_empty=True,  # VAR= means unset, as `os.environ.get(VAR) or default` did
    )

    prefect_dir: str | None = Field(
        None,
        description="home of the CLI's reusable Prefect server (server.json, database, log); "
        "None: .tomcat-fleet/prefect in the project",
    )
    pool_start_method: Literal["forkserver", "spawn"] = Field(
        "forkserver",
        description="the install's process runner: forkserver (task runs here, each chunk's "
        "work in a worker forked from a server holding only the install's modules) or spawn "
        "(Prefect's stock process pool, each worker running Prefect's engine; for comparison)",
    )
    local_dir: str | None = Field(
        None,
        description="the local start's state directory (processes, logs, Prefect database); "
        "None: .tomcat-fleet/local in the project",
    )
    local_prefect_port: int = Field(
        4200, ge=1, le=65535, description="the local start's Prefect server and UI port"
    )
    local_sandbox_port: int = Field(
        4566, ge=1, le=65535, description="the local start's sandbox AWS API port"
    )
    local_ssh_port: int = Field(
        2222, ge=1, le=65535, description="the local start's sandbox SSH port"
    )
    local_sandbox_prefix: str = Field(
        "",
        description="shell words the local start runs the sandbox under (the tests: setpriv "
        "dropping net_bind_service, so its balancers use high ports); empty: none",
    )
    sandbox_state_url: str | None = Field(
        None,
        description="the sandbox's state endpoint (its env file sets it); the benchmark reads "
        "API call and throttling counts there, the deploy's URL artifacts, the local start's "
        "banner and `status` the names and ports that give each URL its `curl` line; None: "
        "not on a sandbox",
    )
    sandbox_dns: str | None = Field(
        None,
        description="host:port of the sandbox's DNS, answering every name it serves (its env "
        "file sets it; `dig @HOST -p PORT NAME`); None: not on a sandbox",
    )
