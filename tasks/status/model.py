"""What `status` reads (`Facts`, plain data from the live estate) and what it concludes
(`StatusReport`, the stable `--json` schema), and the evaluation between them: pure, no
AWS, no Prefect.

Verdicts and exit codes:
- `healthy` (0): everything that exists is in the state the flows leave it in;
- `degraded` (1): something that exists is not; `problems` names each, one line apiece;
- `nothing deployed` (0): no instance, balancer, certificate, environment or database
  carries the deployment's tag (after a teardown). Not an error: the estate is as its
  last teardown left it, and a check that pages on a non-zero exit must not page after an
  intended teardown; a script expecting an estate reads `deployed` (false).
A stage not deployed (a 1-5 deploy has no Beanstalk, no RDS) is not a problem.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, Field

SCHEMA = "tomcat-fleet.status/1"
APP_PORT = 8080
OPEN_WORLD = ("0.0.0.0/0", "::/0")
Verdict = Literal["healthy", "degraded", "nothing deployed"]
EXIT_CODES: dict[str, int] = {"healthy": 0, "degraded": 1, "nothing deployed": 0}


# -- facts --------------------------------------------------------------------------------
class InstanceFact(BaseModel):
    id: str
    role: str  # the tomcat-fleet:role tag (web, traffic, jumphost), beanstalk, or ""
    state: str  # pending, running, stopping, stopped, shutting-down
    public_ip: str | None = None


class TargetFact(BaseModel):
    id: str
    port: int
    state: str  # healthy, initial, unhealthy, unused, draining, unavailable
    reason: str = ""


class AlbFact(BaseModel):
    name: str
    arn: str
    dns_name: str
    state: str  # active, provisioning, failed, active_impaired
    listeners: list[int] = Field(default_factory=list)
    target_group: str | None = None  # its name; None: the target group is missing
    targets: list[TargetFact] = Field(default_factory=list)


class CertificateFact(BaseModel):
    arn: str
    domain: str
    status: str  # ISSUED, PENDING_VALIDATION, EXPIRED, FAILED, ...
    names: list[str] = Field(default_factory=list)


class BeanstalkFact(BaseModel):
    name: str
    status: str  # Launching, Updating, Ready, Terminating (Terminated ones are not read)
    health: str = ""  # Green, Yellow, Red, Grey
    cname: str = ""
    https: bool = False  # its load balancer has a port-443 listener (stage 11)


class DatabaseFact(BaseModel):
    id: str
    status: str
    endpoint: str | None = None
    port: int | None = None


class RuleFact(BaseModel):
    """One ingress permission to one source: a CIDR or a security group id."""

    protocol: str  # tcp, udp, icmp, -1 (all)
    from_port: int | None = None
    to_port: int | None = None
    source: str


class GroupFact(BaseModel):
    id: str
    name: str
    rules: list[RuleFact] = Field(default_factory=list)


class Facts(BaseModel):
    """The live estate of one deployment, as read (tasks/status/read.py)."""

    deployment: str
    region: str
    instances: list[InstanceFact] = Field(default_factory=list)
    alb: AlbFact | None = None
    certificates: list[CertificateFact] = Field(default_factory=list)
    beanstalk: list[BeanstalkFact] = Field(default_factory=list)
    databases: list[DatabaseFact] = Field(default_factory=list)
    web_group: GroupFact | None = None
    alb_group_id: str | None = None
    ingress_ports: list[int] = Field(default_factory=lambda: [22, 80, 8080])
    ingress_cidr: str | None = None  # what the flows open the ports to; None: unknown here
    web_domain: str | None = None
    beanstalk_domain: str | None = None


# -- the report ---------------------------------------------------------------------------
class UrlEntry(BaseModel):
    """A URL and, beside it, how it opens on this machine (tasks/reach.py)."""

    name: str
    url: str
    local_url: str  # the loopback address and port on the sandbox; the URL itself on AWS
    curl: str  # a line a plain shell runs
    address: str | None = None


class StatusReport(BaseModel):
    """`tomcat-fleet status --json`: keys are only ever added (schema names the version)."""

    schema_id: str = Field(SCHEMA, alias="schema")
    deployment: str
    region: str
    verdict: Verdict
    exit_code: int
    deployed: bool
    problems: list[str] = Field(default_factory=list)
    instances_by_state: dict[str, int] = Field(default_factory=dict)
    instances: list[InstanceFact] = Field(default_factory=list)
    alb: AlbFact | None = None
    certificates: list[CertificateFact] = Field(default_factory=list)
    beanstalk: list[BeanstalkFact] = Field(default_factory=list)
    databases: list[DatabaseFact] = Field(default_factory=list)
    web_group: GroupFact | None = None
    drift: list[str] = Field(default_factory=list)  # the problems that are drift
    urls: list[UrlEntry] = Field(default_factory=list)
    sandbox: bool = False  # the URLs open through the sandbox's loopback addresses
    sandbox_dns: str | None = None  # host:port of the sandbox's DNS, which resolves them
    checked_at: str = ""

    model_config = {"populate_by_name": True}

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# -- evaluation ---------------------------------------------------------------------------
def deployed(f: Facts) -> bool:
    return bool(f.instances or f.alb or f.certificates or f.beanstalk or f.databases)


def urls(f: Facts) -> dict[str, str]:
    """The estate's URLs as the deploy report names them, from what is live."""
    out: dict[str, str] = {}
    if f.alb is not None:
        out["alb_http"] = f"http://{f.alb.dns_name}/"
        if 443 in f.alb.listeners and f.web_domain:
            out["alb_https"] = f"https://{f.web_domain}/"
    for env in f.beanstalk:
        if env.cname:
            out.setdefault("beanstalk_http", f"http://{env.cname}/")
            if env.https and f.beanstalk_domain:
                out.setdefault("beanstalk_https", f"https://{f.beanstalk_domain}/")
    return out


def _rule_text(r: RuleFact) -> str:
    if r.protocol == "-1":
        ports = "all traffic"
    elif r.from_port == r.to_port:
        ports = f"{r.protocol} {r.from_port}"
    else:
        ports = f"{r.protocol} {r.from_port}-{r.to_port}"
    return f"{ports} from {r.source}"


def _expected(r: RuleFact, f: Facts) -> bool:
    """A rule the flows set on the web group: an install port from the controller's CIDR
    (any single source when that CIDR is not known here, never the whole internet), or
    8080 from the deployment's ALB group."""
    if r.protocol != "tcp" or r.from_port != r.to_port or r.from_port is None:
        return False
    if r.source.startswith("sg-"):
        return r.from_port == APP_PORT and r.source == f.alb_group_id
    if r.from_port not in f.ingress_ports or r.source in OPEN_WORLD:
        return False
    return f.ingress_cidr is None or r.source == f.ingress_cidr


def drift(f: Facts) -> list[str]:
    """Where the estate differs from what the deploy made: running web instances outside
    the target group, web-group ingress the flows do not set (or the ALB rule missing)."""
    out = []
    if f.alb is not None and f.alb.target_group is not None:
        registered = {t.id for t in f.alb.targets}
        for i in f.instances:
            if i.role == "web" and i.state == "running" and i.id not in registered:
                out.append(
                    f"instance {i.id} is running but not in the target group {f.alb.target_group}"
                )
    g = f.web_group
    if g is not None:
        for r in g.rules:
            if not _expected(r, f):
                out.append(
                    f"web security group {g.id} admits {_rule_text(r)}, which the flows do not set"
                )
        alb_rule = any(
            r.source == f.alb_group_id and r.protocol == "tcp" and r.from_port == APP_PORT
            for r in g.rules
        )
        if f.alb is not None and f.alb_group_id and not alb_rule:
            out.append(
                f"web security group {g.id} no longer admits {APP_PORT} from the ALB's group "
                f"{f.alb_group_id} (the balancer cannot reach the instances)"
            )
    return out


def problems(f: Facts) -> list[str]:
    """One line per thing that is not as the flows leave it, drift included (last)."""
    out = []
    for i in f.instances:
        if i.state != "running":
            out.append(f"instance {i.id} ({i.role or 'untagged role'}) is {i.state}")
    if f.alb is not None:
        a = f.alb
        if a.state != "active":
            out.append(f"load balancer {a.name} is {a.state}")
        if 80 not in a.listeners:
            out.append(f"load balancer {a.name} has no HTTP listener on port 80")
        if a.target_group is None:
            out.append(f"load balancer {a.name} has no target group")
        else:
            for t in a.targets:
                if t.state != "healthy":
                    why = f" ({t.reason})" if t.reason else ""
                    out.append(f"target {t.id}:{t.port} of {a.target_group} is {t.state}{why}")
            if not any(t.state == "healthy" for t in a.targets):
                out.append(f"target group {a.target_group} has no healthy target")
    for c in f.certificates:
        if c.status != "ISSUED":
            out.append(f"certificate {c.domain} is {c.status}")
    for env in f.beanstalk:
        if env.status != "Ready":
            out.append(f"Beanstalk environment {env.name} is {env.status}")
        elif env.health == "Red":
            out.append(f"Beanstalk environment {env.name} health is Red")
    for db in f.databases:
        if db.status != "available":
            out.append(f"RDS instance {db.id} is {db.status}")
    return out + drift(f)


def evaluate(
    f: Facts, url_entries: list[UrlEntry], sandbox_dns: str | None, at: str
) -> StatusReport:
    """The report of `f`: its verdict, exit code and problems, with the URLs given (made
    from `urls(f)` and how they open here) and the sandbox's DNS (None on AWS)."""
    found = problems(f)
    live = deployed(f)
    verdict: Verdict = "degraded" if found else ("healthy" if live else "nothing deployed")
    return StatusReport(
        deployment=f.deployment,
        region=f.region,
        verdict=verdict,
        exit_code=EXIT_CODES[verdict],
        deployed=live,
        problems=found,
        instances_by_state=dict(sorted(Counter(i.state for i in f.instances).items())),
        instances=f.instances,
        alb=f.alb,
        certificates=f.certificates,
        beanstalk=f.beanstalk,
        databases=f.databases,
        web_group=f.web_group,
        drift=drift(f),
        urls=url_entries,
        sandbox=sandbox_dns is not None,
        sandbox_dns=sandbox_dns,
        checked_at=at,
    )
