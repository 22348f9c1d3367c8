"""Where the sandbox bends moto so its answers come from what really happens on loopback.

moto keeps its state in process-wide backends, so these patches are process-wide too and
consult one registered `Hooks` object (the running sandbox):
- RunInstances honours ClientToken (same token, same reservation) as EC2 does;
- EC2 public IPs are allocated from the sandbox's loopback range;
- GetConsoleOutput prints the host's real SSH host key fingerprints the way cloud-init does;
- ELBv2 target health is the result of the sandbox's real health checks, and a
  deregistered target drains for the group's deregistration delay (`sandbox/draining.py`);
- an ACM DNS certificate is ISSUED only once its validation CNAME, name and value, is in a
  Route53 zone; ELB refuses an HTTPS listener whose certificate is not ISSUED
  (`UnsupportedCertificate`), on CreateListener and ModifyListener;
- a Route53 change is PENDING until it has propagated (GetChange reports INSYNC after
  `ROUTE53_PROPAGATION_S`), as on AWS; the records themselves apply at once;
- an RDS instance is `creating` until the sandbox's create delay has passed;
- Elastic Beanstalk applications keep their tags (moto tags environments only);
- Elastic Beanstalk environments get a CNAME, a launch phase, DescribeEnvironmentResources
  and TerminateEnvironment (moto lacks the last two); CreateEnvironment needs an existing
  service role that trusts Elastic Beanstalk (InvalidParameterValue otherwise).
"""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

from moto.acm.models import CertBundle
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ec2.models import elastic_ip_addresses, elastic_network_interfaces
from moto.ec2.models.instances import InstanceBackend
from moto.ec2.responses.general import General
from moto.ec2.utils import Base64EncodedString
from moto.elasticbeanstalk.models import Environment
from moto.elasticbeanstalk.responses import EBResponse
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup
from moto.rds.models import DBInstance, rds_backends
from moto.route53.responses import Route53

from .draining import install as install_draining
from .eb_names import environment_id

ACCOUNT = DEFAULT_ACCOUNT_ID
ROUTE53_PROPAGATION_S = 0.3
_changes: dict[str, float] = {}  # change id -> when it was submitted (monotonic)


class Hooks(Protocol):
    def console_output(self, instance_id: str) -> str: ...

    def target_health(self, tg_arn: str, target_id: str, port: int) -> tuple[str, str, str]:
        """(state, reason code, description); reason may be ''."""
        ...

    def target_changed(self, tg_arn: str, target_id: str, port: int, what: str) -> None:
        """A target was deregistered (`draining`) or registered (`registered`)."""
        ...

    def eb_resources(self, env: Any) -> dict[str, Any]: ...

    def eb_terminate(self, env: Any) -> None: ...


class _State:
    hooks: Hooks | None = None
    public_ips: Iterator[str] = iter(())
    elastic_ips: Iterator[str] = iter(())
    lock = threading.Lock()
    installed = False


def _addresses(cidr: str) -> Iterator[str]:
    for addr in ipaddress.ip_network(cidr).hosts():
        last = int(addr) & 0xFF
        if last not in (0, 1, 255):
            yield str(addr)


def _next(it_name: str) -> str:
    with _State.lock:
        try:
            return str(next(getattr(_State, it_name)))
        except StopIteration:
            raise RuntimeError("sandbox loopback address range exhausted") from None


def register(hooks: Hooks, public_cidr: str, elastic_cidr: str) -> None:
    """Point the patches at a sandbox and install them once per process."""
    _State.hooks = hooks
    _State.public_ips = _addresses(public_cidr)
    _State.elastic_ips = _addresses(elastic_cidr)
    if not _State.installed:
        _install()
        _State.installed = True
    install_draining(_target_changed)


def _target_changed(tg_arn: str, target_id: str, port: int, what: str) -> None:
    if _State.hooks is not None:
        _State.hooks.target_changed(tg_arn, target_id, port, what)


def unregister() -> None:
    _State.hooks = None


def _install() -> None:
    elastic_network_interfaces.random_public_ip = lambda: _next("public_ips")
    elastic_ip_addresses.random_ip = lambda: _next("elastic_ips")
    General.get_console_output = _get_console_output  # type: ignore[method-assign]
    _orig_run = InstanceBackend.run_instances

    def run_instances(
        self: Any,
        image_id: str,
        count: int,
        user_data: Any,
        security_group_names: list[str],
        **kwargs: Any,
    ) -> Any:
        token = kwargs.get("client_token")
        if token and token != "ABCDE":  # moto's default when no token is sent
            for reservation in self.all_reservations():
                if any(i.client_token == token for i in reservation.instances):
                    return reservation  # EC2 idempotency: same token, same reservation
        return _orig_run(self, image_id, count, user_data, security_group_names, **kwargs)

    InstanceBackend.run_instances = run_instances  # type: ignore[method-assign]
    _orig_change = Route53.change_resource_record_sets

    def change_resource_record_sets(self: Route53) -> ActionResult:
        result = _orig_change(self)
        change_id = f"/change/C{uuid.uuid4().hex[:13].upper()}"
        with _State.lock:
            _changes[change_id] = time.monotonic()
        info = result.result["ChangeInfo"]  # type: ignore[index]
        info["Id"], info["Status"] = change_id, "PENDING"
        return result

    def get_change(self: Route53) -> ActionResult:
        change_id = self._get_param("Id")
        if not change_id.startswith("/change/"):
            change_id = f"/change/{change_id}"
        with _State.lock:
            submitted = _changes.get(change_id)
        if submitted is None:
            from moto.route53.exceptions import Route53ClientError

            raise Route53ClientError(
                "NoSuchChange", f"A change with the specified change ID does not exist: {change_id}"
            )
        done = time.monotonic() - submitted >= ROUTE53_PROPAGATION_S
        return ActionResult(
            {
                "ChangeInfo": {
                    "Id": change_id,
                    "Status": "INSYNC" if done else "PENDING",
                    "SubmittedAt": utcnow(),
                }
            }
        )

    Route53.change_resource_record_sets = change_resource_record_sets  # type: ignore[method-assign]
    Route53.get_change = get_change  # type: ignore[method-assign]
    _orig_health = FakeTargetGroup.health_for

    def health_for(self: FakeTargetGroup, target: dict[str, Any], ec2_backend: Any) -> Any:
        status = _orig_health(self, target, ec2_backend)
        hooks = _State.hooks
        if hooks is None or status.status != "healthy":
            return status
        state, reason, desc = hooks.target_health(self.arn, status.instance_id, int(status.port))
        return FakeHealthStatus(
            status.instance_id,
            status.port,
            self.health_check_port,
            state,
            reason or None,
            desc or None,
        )

    FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]
    CertBundle.check = _cert_check  # type: ignore[method-assign]
    _orig_create_listener = ELBv2Backend.create_listener
    _orig_modify_listener = ELBv2Backend.modify_listener

    def create_listener(self: ELBv2Backend, *args: Any, **kwargs: Any) -> Any:
        certificate = kwargs.get("certificate", args[4] if len(args) > 4 else None)
        _require_issued(self.account_id, self.region_name, [certificate] if certificate else [])
        return _orig_create_listener(self, *args, **kwargs)

    def modify_listener(self: ELBv2Backend, *args: Any, **kwargs: Any) -> Any:
        certs = kwargs.get("certificates", args[4] if len(args) > 4 else None) or []
        arns = [c["CertificateArn"] for c in certs if c.get("CertificateArn")]
        _require_issued(self.account_id, self.region_name, arns)
        return _orig_modify_listener(self, *args, **kwargs)

    ELBv2Backend.create_listener = create_listener  # type: ignore[method-assign]
    ELBv2Backend.modify_listener = modify_listener  # type: ignore[method-assign]

    _orig_env_init = Environment.__init__

    def env_init(self: Environment, *args: Any, **kwargs: Any) -> None:
        _orig_env_init(self, *args, **kwargs)
        self.cname = f"{self.environment_name}.{self.region}.elasticbeanstalk.com"
        self.endpoint_url = self.cname
        self.status = "Launching"
        self.health = "Grey"
        # from the ARN: the authorizer names the stack and its resources before creation
        self.environment_id = environment_id(self.environment_arn)

    Environment.__init__ = env_init  # type: ignore[method-assign]

    _orig_db_init = DBInstance.__init__

    def db_init(self: DBInstance, *args: Any, **kwargs: Any) -> None:
        _orig_db_init(self, *args, **kwargs)
        self.status = "creating"  # the sandbox makes it available after its create delay

    DBInstance.__init__ = db_init  # type: ignore[method-assign]
    EBResponse.describe_environment_resources = _eb_describe_resources  # type: ignore[attr-defined]
    EBResponse.terminate_environment = _eb_terminate  # type: ignore[attr-defined]

    def describe_environments(self: EBResponse) -> ActionResult:
        names = set(self._get_param("EnvironmentNames") or [])
        include_deleted = self._get_param("IncludeDeleted", True)
        envs = [
            e
            for e in self.elasticbeanstalk_backend.describe_environments()
            if (not names or e.environment_name in names)
            and (include_deleted or e.status != "Terminated")
        ]
        return ActionResult({"Environments": envs})

    EBResponse.describe_environments = describe_environments  # type: ignore[method-assign]
    _orig_create_env = EBResponse.create_environment

    def create_environment(self: EBResponse) -> ActionResult:
        from .eb_roles import check_service_role

        options = self._get_param("OptionSettings") or []
        check_service_role(self.current_account, options)
        result = _orig_create_env(self)
        # kept on the environment: the sandbox builds its launch template from them
        for env in self.elasticbeanstalk_backend.describe_environments():
            if env.environment_name == self._get_param("EnvironmentName"):
                env.option_settings = options  # type: ignore[attr-defined]
        return result

    EBResponse.create_environment = create_environment  # type: ignore[method-assign]
    _patch_eb_application_tags()


def _patch_eb_application_tags() -> None:
    """Applications keep the tags they were created with, and ListTagsForResource /
    UpdateTagsForResource work on their ARNs too (moto tags environments only)."""
    from moto.elasticbeanstalk.models import EBBackend

    _orig_create_app = EBResponse.create_application

    def create_application(self: EBResponse) -> ActionResult:
        result = _orig_create_app(self)
        app = self.elasticbeanstalk_backend.applications[self._get_param("ApplicationName")]
        app.tags = {t["Key"]: t.get("Value", "") for t in self._get_param("Tags") or []}  # type: ignore[attr-defined]
        return result

    _orig_find = EBBackend._find_environment_by_arn

    def find_by_arn(self: EBBackend, arn: str) -> Any:
        for app in self.applications.values():
            if app.arn == arn:
                if not hasattr(app, "tags"):
                    app.tags = {}  # type: ignore[attr-defined]
                return app
        return _orig_find(self, arn)

    EBResponse.create_application = create_application  # type: ignore[method-assign]
    EBBackend._find_environment_by_arn = find_by_arn  # type: ignore[method-assign]


def _get_console_output(self: General) -> ActionResult:
    instance_id = self._get_param("InstanceId")
    instance = self.ec2_backend.get_instance(instance_id)
    text = _State.hooks.console_output(instance.id) if _State.hooks else ""
    result = {
        "InstanceId": instance.id,
        "Timestamp": utcnow(),
        "Output": Base64EncodedString.from_raw_string(text),
    }
    return ActionResult(result)


def mark_database_available(region: str, db_id: str) -> None:
    db = rds_backends[ACCOUNT][region].databases.get(db_id)
    if db is not None and db.status == "creating":
        db.status = "available"


def validation_record_name(domain: str) -> str:
    """The CNAME name moto hands out for a domain's DNS validation (see CertBundle.describe)."""
    base = domain[2:] if domain.startswith("*.") else domain
    return f"_d930b28be6c5927595552b219965053e.{base}."


def _dotted(name: str) -> str:
    return name.strip().rstrip(".").lower() + "."


def _route53_records() -> set[tuple[str, str, str]]:
    """Every (name, type, value) in the sandbox's Route 53 zones, names and values dotted."""
    from moto.route53.models import route53_backends

    backend = route53_backends[ACCOUNT]["aws"]
    return {
        (_dotted(rr.name), str(rr.type).upper(), _dotted(str(value)))
        for zone in list(backend.zones.values())
        for rr in list(zone.rrsets)
        for value in list(rr.records or [])
    }


def _cert_check(self: CertBundle) -> None:
    now = utcnow()
    if self._not_valid_after(self._cert) <= now:
        self.status = "EXPIRED"
        return
    if self.type != "AMAZON_ISSUED" or self.status != "PENDING_VALIDATION":
        return
    records = _route53_records()
    wanted = {
        (_dotted(o["ResourceRecord"]["Name"]), "CNAME", _dotted(o["ResourceRecord"]["Value"]))
        for o in self.describe()["Certificate"]["DomainValidationOptions"]
        if "ResourceRecord" in o
    }
    if wanted and wanted <= records:  # ACM checks the CNAME's name AND its value
        self.status = "ISSUED"


UNSUPPORTED_CERTIFICATE = (
    "The certificate '{arn}' must have a fully-qualified domain name, a supported "
    "signature, and a supported key size."
)


def _require_issued(account_id: str, region: str, arns: list[str]) -> None:
    """ELB refuses an HTTPS listener whose ACM certificate is not ISSUED."""
    from moto.acm.models import CertificateNotFound, acm_backends
    from moto.elbv2.exceptions import ELBClientError

    for arn in arns:
        if ":acm:" not in arn:
            continue
        try:
            cert = acm_backends[account_id][region].get_certificate(arn)
        except CertificateNotFound:
            continue  # moto answers CertificateNotFound itself
        if cert.status != "ISSUED":
            raise ELBClientError("UnsupportedCertificate", UNSUPPORTED_CERTIFICATE.format(arn=arn))


def _find_env(resp: EBResponse) -> Any:
    name = resp._get_param("EnvironmentName")
    env_id = resp._get_param("EnvironmentId")
    from moto.elasticbeanstalk.exceptions import InvalidParameterValueError

    for env in resp.elasticbeanstalk_backend.describe_environments():
        if (name and env.environment_name == name) or (env_id and env.environment_id == env_id):
            return env
    raise InvalidParameterValueError(f"No Environment found for EnvironmentName = '{name}'.")


def _eb_describe_resources(self: EBResponse) -> ActionResult:
    env = _find_env(self)
    resources = _State.hooks.eb_resources(env) if _State.hooks else {}
    return ActionResult({"EnvironmentResources": resources})


def _eb_terminate(self: EBResponse) -> ActionResult:
    env = _find_env(self)
    if env.status in ("Terminating", "Terminated"):
        return ActionResult(env)
    env.status = "Terminating"
    if _State.hooks:
        _State.hooks.eb_terminate(env)
    return ActionResult(env)
