"""Scale check for the sandbox: N instances, tomcat9 installed on all from a plain thread pool.

Starts `python -m sandbox` as its own process (so its memory is measured alone), launches
N instances through the AWS API, then SSHes to every host from a ThreadPoolExecutor to
install and start tomcat9 and GETs port 8080. Prints a table and, last, one JSON line:
hosts ready, wall seconds, sandbox peak RSS.

    python -m benchmarks.sandbox_scale --instances 1000 --threads 64
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
import paramiko
import psutil
from botocore.config import Config

from tasks.runtime.sandbox_process import SandboxProcess

INSTALL = (
    "sudo cloud-init status --wait && sudo apt-get update -q && "
    "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q tomcat9 && "
    "sudo systemctl enable --now tomcat9"
)


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self.stop.wait(0.2)


def install(ip: str, port: int, key: str, retries: int = 60) -> str | None:
    pkey = paramiko.RSAKey.from_private_key(io.StringIO(key))
    for _ in range(retries):
        c = paramiko.SSHClient()
        c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            c.connect(
                ip,
                port=port,
                username="ubuntu",
                pkey=pkey,
                timeout=10,
                banner_timeout=30,
                auth_timeout=30,
                look_for_keys=False,
                allow_agent=False,
            )
            _, out, err = c.exec_command(INSTALL, timeout=120)
            status = out.channel.recv_exit_status()
            if status != 0:
                return f"exit {status}: {err.read().decode()[-200:]}"
            with urllib.request.urlopen(f"http://{ip}:8080/", timeout=10) as r:
                return None if r.status == 200 else f"http {r.status}"
        except (OSError, paramiko.SSHException):
            time.sleep(0.5)
        finally:
            c.close()
    return "unreachable"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--install-latency", type=float, default=2.0)
    ap.add_argument(
        "--token-buckets",
        action="store_true",
        help="keep the sandbox's AWS API token buckets on (off by default here: this measures "
        "the sandbox's own capacity, and RunInstances' 1000-instance resource bucket refills "
        "at 2/s)",
    )
    args = ap.parse_args()

    sandbox_args = [
        "--install-latency",
        str(args.install_latency),
        "--boot-delay",
        "1",
        "--cloud-init-seconds",
        "0.5",
        *([] if args.token_buckets else ["--no-token-buckets"]),
    ]
    with SandboxProcess(sandbox_args) as sandbox:
        rss = PeakRss(sandbox.pid)
        env = sandbox.env
        ec2 = boto3.client(
            "ec2",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 10, "mode": "standard"}),
        )
        t0 = time.monotonic()
        key = ec2.create_key_pair(KeyName="bench")["KeyMaterial"]
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        sg = ec2.create_security_group(GroupName="bench", Description="b", VpcId=vpc)["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=sg,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": p,
                    "ToPort": p,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                }
                for p in (22, 8080)
            ],
        )
        ips: list[str] = []
        remaining = args.instances
        while remaining:
            n = min(remaining, 500)
            res = ec2.run_instances(
                ImageId="ami-12c6146b",
                MinCount=n,
                MaxCount=n,
                KeyName="bench",
                SecurityGroupIds=[sg],
            )
            ids = [i["InstanceId"] for i in res["Instances"]]
            for start in range(0, len(ids), 100):
                desc = ec2.describe_instances(InstanceIds=ids[start : start + 100])
                ips += [i["PublicIpAddress"] for r in desc["Reservations"] for i in r["Instances"]]
            remaining -= n
        launched = time.monotonic() - t0
        port = int(env["TOMCAT_FLEET_SSH_PORT"])
        with ThreadPoolExecutor(args.threads) as pool:
            errors = list(pool.map(lambda ip: install(ip, port, key), ips))
        wall = time.monotonic() - t0
        ready = sum(e is None for e in errors)
        with urllib.request.urlopen(env["TOMCAT_FLEET_SANDBOX_STATE_URL"], timeout=30) as r:
            state = json.load(r)
        served = sum(1 for h in state["hosts"] if h["http_requests"] >= 1)
        rss.stop.set()
    peak_mb = rss.peak / 2**20
    rows = [
        ("instances", args.instances),
        ("threads", args.threads),
        ("launch_s", f"{launched:.1f}"),
        ("hosts_ready", ready),
        ("hosts_served_per_state_json", served),
        ("wall_s", f"{wall:.1f}"),
        ("sandbox_peak_rss_mb", f"{peak_mb:.0f}"),
    ]
    for k, v in rows:
        print(f"{k:<30} {v}")
    failures = [e for e in errors if e][:3]
    if failures:
        print("first failures:", failures)
    print(
        json.dumps(
            {
                "benchmark": "sandbox_scale",
                "instances": args.instances,
                "threads": args.threads,
                "hosts_ready": ready,
                "hosts_served": served,
                "wall_s": round(wall, 1),
                "launch_s": round(launched, 1),
                "sandbox_peak_rss_mb": round(peak_mb),
            }
        )
    )


if __name__ == "__main__":
    main()
