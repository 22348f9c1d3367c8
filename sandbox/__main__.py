"""`python -m sandbox`: run the sandbox until interrupted.

Prints `SANDBOX READY endpoint=... ssh_port=...` once serving and writes the env file.
Bad options give one line on stderr and exit status 2; nothing is left running.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from pydantic import ValidationError

from .config import FAULT_PROFILES, SandboxConfig
from .server import Sandbox, SandboxError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    p.add_argument("--port", type=int, default=0, help="AWS API port (0: any free port)")
    p.add_argument("--ssh-port", type=int, default=0, help="SSH port of every host (0: any)")
    p.add_argument(
        "--dns-port",
        type=int,
        default=0,
        help="DNS port (UDP and TCP) answering the names the sandbox serves (0: any free port)",
    )
    p.add_argument("--env-file", default=".sandbox.env")
    p.add_argument("--state-dir", default=None, help="where the CA and certificates live")
    p.add_argument(
        "--install-latency",
        type=float,
        default=2.0,
        help="seconds to install and start tomcat9 (jittered)",
    )
    p.add_argument("--latency-jitter", type=float, default=0.2)
    p.add_argument("--boot-delay", type=float, default=2.0)
    p.add_argument("--cloud-init-seconds", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fault-profile", default="clean", help="/".join(FAULT_PROFILES))
    p.add_argument(
        "--account-profile",
        default="fresh",
        help="what the account holds at start: fresh (empty) or busy (SSO roles, "
        "OrganizationAccountAccessRole, another deployment's estate, foreign IAM roles, "
        "instances, security groups, a second hosted zone and foreign records)",
    )
    p.add_argument(
        "--throttle-rate",
        type=float,
        default=0.0,
        help="fraction of EC2 calls refused with RequestLimitExceeded, on top of the "
        "token buckets (a fault knob; default 0)",
    )
    p.add_argument(
        "--no-enforce-iam",
        dest="enforce_iam",
        action="store_false",
        help="allow every API call (by default calls are authorised by IAM: the env file's "
        "keys are an operator user holding exactly docs/iam-policy.json)",
    )
    p.add_argument(
        "--no-token-buckets",
        dest="token_buckets",
        action="store_false",
        help="turn off AWS's API token buckets (on by default at AWS's published rates)",
    )
    p.add_argument(
        "--mutate-bucket", type=float, default=50.0, help="EC2 mutating bucket (default 50)"
    )
    p.add_argument("--mutate-refill", type=float, default=5.0, help="tokens/s (default 5)")
    p.add_argument(
        "--describe-bucket", type=float, default=100.0, help="EC2 describe bucket (default 100)"
    )
    p.add_argument("--describe-refill", type=float, default=20.0, help="tokens/s (default 20)")
    p.add_argument(
        "--run-instances-bucket", type=float, default=5.0, help="RunInstances (default 5)"
    )
    p.add_argument("--run-instances-refill", type=float, default=2.0, help="(default 2/s)")
    p.add_argument("--controller-cidr", default="198.51.100.10/32")
    p.add_argument("--drop-hold-seconds", type=float, default=20.0)
    p.add_argument(
        "--lb-port-base",
        type=int,
        default=None,
        help="load-balancer ports below 1024 listen at BASE+port (80 -> BASE+80, 443 -> "
        "BASE+443); default: 80/443 when this process may bind them, else 8000",
    )
    p.add_argument("--hosted-zone", default="sandbox.example.com")
    p.add_argument(
        "--public-ip-cidr",
        default="127.100.0.0/16",
        help="loopback range for instance public IPs (distinct per sandbox)",
    )
    p.add_argument(
        "--service-ip-cidr",
        default="127.101.0.0/16",
        help="loopback range for load balancers and services",
    )
    return p


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        port=args.port,
        ssh_port=args.ssh_port,
        dns_port=args.dns_port,
        state_dir=args.state_dir,
        install_latency=args.install_latency,
        latency_jitter=args.latency_jitter,
        boot_delay=args.boot_delay,
        cloud_init_seconds=args.cloud_init_seconds,
        seed=args.seed,
        fault_profile=args.fault_profile,
        account_profile=args.account_profile,
        throttle_rate=args.throttle_rate,
        token_buckets=args.token_buckets,
        enforce_iam=args.enforce_iam,
        run_instances_bucket_size=args.run_instances_bucket,
        run_instances_refill_per_s=args.run_instances_refill,
        mutate_bucket_size=args.mutate_bucket,
        mutate_refill_per_s=args.mutate_refill,
        describe_bucket_size=args.describe_bucket,
        describe_refill_per_s=args.describe_refill,
        controller_cidr=args.controller_cidr,
        drop_hold_seconds=args.drop_hold_seconds,
        hosted_zone=args.hosted_zone,
        lb_port_base=args.lb_port_base,
        public_ip_cidr=args.public_ip_cidr,
        service_ip_cidr=args.service_ip_cidr,
    )


def describe_validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(x) for x in err["loc"]) or "options"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"invalid --{field.replace('_', '-')}: {msg} (got {err.get('input')!r})"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValidationError as exc:
        print(f"sandbox: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    sandbox = Sandbox(cfg)
    try:
        sandbox.start()
    except SandboxError as exc:
        sandbox.stop()
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        sandbox.write_env_file(args.env_file)
        print(
            f"SANDBOX READY endpoint={sandbox.endpoint} ssh_port={sandbox.ssh_port} "
            f"lb_ports={sandbox.lb_ports_text()} dns={sandbox.dns_address}",
            flush=True,
        )
        stop.wait()
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
