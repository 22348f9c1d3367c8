"""The sandbox's side of a rollout: a deregistered target drains as on AWS (moto's
backend, patched by sandbox/draining.py), the balancer sends it no new request from the
moment it is deregistered, and `apt-get install --reinstall` stops Tomcat while the
package is unpacked."""

from __future__ import annotations

import time
from typing import Any

import boto3
from moto import mock_aws

import sandbox.draining as draining
from sandbox.elb import Balancers
from sandbox.snapshot import ListenerInfo, TargetGroupInfo

from .test_shell import NONINTERACTIVE, Shell


def _health(elb: Any, tg: str, ids: list[str] | None = None) -> dict[str, tuple[str, str]]:
    kw: dict[str, Any] = {"Targets": [{"Id": i, "Port": 8080} for i in ids]} if ids else {}
    descs = elb.describe_target_health(TargetGroupArn=tg, **kw)["TargetHealthDescriptions"]
    return {
        d["Target"]["Id"]: (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason", ""))
        for d in descs
    }


def test_a_deregistered_target_drains_for_the_delay_then_is_gone() -> None:
    told: list[tuple[str, int, str]] = []
    draining.install(lambda arn, tid, port, what: told.append((tid, port, what)))
    try:
        with mock_aws():
            ec2 = boto3.client("ec2", region_name="us-east-1")
            elb = boto3.client("elbv2", region_name="us-east-1")
            vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
            ami = ec2.describe_images()["Images"][0]["ImageId"]
            ids = [
                i["InstanceId"]
                for i in ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2)["Instances"]
            ]
            tg = elb.create_target_group(Name="t", Protocol="HTTP", Port=8080, VpcId=vpc)[
                "TargetGroups"
            ][0]["TargetGroupArn"]
            elb.modify_target_group_attributes(
                TargetGroupArn=tg,
                Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "1"}],
            )
            elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i, "Port": 8080} for i in ids])
            elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": ids[0], "Port": 8080}])
            assert (ids[0], 8080, "draining") in told
            draining_now = ("draining", "Target.DeregistrationInProgress")
            assert _health(elb, tg)[ids[0]] == draining_now  # listed without Targets too
            assert _health(elb, tg, [ids[0]]) == {ids[0]: draining_now}
            time.sleep(1.1)
            assert ids[0] not in _health(elb, tg)
            assert _health(elb, tg, [ids[0]]) == {ids[0]: ("unused", "Target.NotRegistered")}
            # registered again while draining: the drain ends, the target is back
            elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": ids[1], "Port": 8080}])
            elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": ids[1], "Port": 8080}])
            assert (ids[1], 8080, "registered") in told
            assert _health(elb, tg)[ids[1]][0] != "draining"
    finally:
        draining.install(None)


def test_the_balancer_stops_sending_at_once_and_checks_do_not_revive_it() -> None:
    bal = Balancers(None, lambda: "127.0.0.9", lambda tid: None, lambda *a: True, 1.0)  # type: ignore[arg-type]
    tg = TargetGroupInfo("tg", 8080, "HTTP", "/", "traffic-port", (("i-1", 8080), ("i-2", 8080)))
    bal.target_groups = {"tg": tg}
    li = ListenerInfo("li", 80, "HTTP", (), ("tg",))
    for tid in ("i-1", "i-2"):
        bal.target_changed("tg", tid, 8080, "registered")
        bal.health[("tg", tid, 8080)].record(True, "", "")
    assert bal.healthy_targets(li) == [("i-1", 8080), ("i-2", 8080)]
    bal.target_changed("tg", "i-1", 8080, "draining")  # before any snapshot says so
    assert bal.healthy_targets(li) == [("i-2", 8080)]
    bal.health[("tg", "i-1", 8080)].record(True, "", "")  # a check in flight
    assert bal.lookup("tg", "i-1", 8080)[:2] == ("draining", "Target.DeregistrationInProgress")
    assert [t[2:] for t in bal.transitions][-1] == ("i-1", "draining")


def test_reinstall_stops_tomcat_while_unpacking_and_starts_it_again() -> None:
    sh = Shell()
    sh.install_tomcat()
    seen: list[bool] = []
    stop = sh.net.stop_tomcat

    async def stop_and_note(host: Any) -> None:
        await stop(host)
        seen.append(sh.net.tomcat_running)

    sh.net.stop_tomcat = stop_and_note  # type: ignore[method-assign]
    status, out, err = sh.run(f"{NONINTERACTIVE} apt-get install --reinstall -y -q tomcat9")
    assert status == 0, err
    assert "1 reinstalled" in out and "Unpacking tomcat9 (9.0.58-1ubuntu0.1) over" in out
    assert seen == [False]  # stopped (its port refused) ...
    assert sh.net.tomcat_running and sh.net.starts == 2  # ... and started again
    # a disabled service is not started again by the postinst
    assert sh.run("sudo systemctl disable tomcat9")[0] == 0
    assert sh.run(f"{NONINTERACTIVE} apt-get install --reinstall -y -q tomcat9")[0] == 0
    assert not sh.net.tomcat_running


def test_a_broken_mirror_fails_the_reinstall_before_stopping_anything() -> None:
    sh = Shell()
    sh.install_tomcat()
    sh.host.faults.broken_mirror = True
    status, _, err = sh.run(f"{NONINTERACTIVE} apt-get install --reinstall -y tomcat9")
    assert status == 100 and "Failed to fetch" in err
    assert sh.net.tomcat_running and sh.net.starts == 1
