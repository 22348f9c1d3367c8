"""What an operator sees, the pure parts: the sandbox's DNS answers, the `curl` line beside
each URL, the status verdict from fixture facts (and its table and JSON), the messages
(`--stages 3-1`, one default per option, a one-line error logged without traceback)."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from typing import Annotated, Any, get_args

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from blocks.fleet_error import BlockNotFound, FleetError, OneLineFilter
from sandbox.dns import answer
from tasks.artifacts import url_links
from tasks.inputs import parse_stages
from tasks.planning import PlanError
from tasks.reach import LocalView, opening, openings, view_from_state
from tasks.status.model import (
    SCHEMA,
    AlbFact,
    BeanstalkFact,
    CertificateFact,
    DatabaseFact,
    Facts,
    GroupFact,
    InstanceFact,
    RuleFact,
    StatusReport,
    TargetFact,
    UrlEntry,
    evaluate,
    urls,
)
from tasks.status.render import as_json, markdown, table

NAMES = {
    "d-alb-1.us-east-1.elb.amazonaws.com": "127.151.0.2",
    "www.sandbox.example.com": "127.151.0.2",
    "d-env.us-east-1.elasticbeanstalk.com": "127.151.0.4",
    "d-db.abc.us-east-1.rds.amazonaws.com": "rds:d-db.abc.us-east-1.rds.amazonaws.com",
}


# -- the sandbox's DNS ----------------------------------------------------------------------
def ask(name: str, qtype: str = "A") -> DNSRecord:
    raw = answer(DNSRecord.question(name, qtype).pack(), NAMES)
    assert raw is not None
    return DNSRecord.parse(raw)


def test_dns_answers_a_served_name_with_its_loopback_address() -> None:
    reply = ask("WWW.Sandbox.Example.com.")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa and reply.header.qr
    assert [(str(r.rname), QTYPE[r.rtype], str(r.rdata)) for r in reply.rr] == [
        ("WWW.Sandbox.Example.com.", "A", "127.151.0.2")
    ]
    assert reply.rr[0].ttl <= 5  # a recreated balancer moves: short-lived answers


def test_dns_unknown_is_nxdomain_known_without_address_is_empty() -> None:
    assert ask("nowhere.example.com").header.rcode == RCODE.NXDOMAIN
    for reply in (
        ask("d-db.abc.us-east-1.rds.amazonaws.com"),
        ask("www.sandbox.example.com", "AAAA"),
    ):
        assert reply.header.rcode == RCODE.NOERROR and not reply.rr


def test_dns_ignores_what_is_not_a_query() -> None:
    assert answer(b"\x00\x01garbage", NAMES) is None
    response = DNSRecord.question("www.sandbox.example.com").reply().pack()
    assert answer(response, NAMES) is None


# -- the line a plain shell opens a URL with ------------------------------------------------------
VIEW = LocalView(NAMES, {80: 80, 443: 443}, "127.0.0.1:5353", "/tmp/ca.pem")
MOVED = LocalView(NAMES, {80: 8080, 443: 8443}, "127.0.0.1:5353", "/tmp/ca.pem")


def test_curl_resolves_the_name_when_the_port_is_the_same() -> None:
    o = opening("alb_http", "http://d-alb-1.us-east-1.elb.amazonaws.com/", VIEW)
    assert o.curl == (
        "curl --resolve d-alb-1.us-east-1.elb.amazonaws.com:80:127.151.0.2 "
        "http://d-alb-1.us-east-1.elb.amazonaws.com/"
    )
    assert o.local_url == "http://127.151.0.2:80/" and o.address == "127.151.0.2"


def test_curl_connects_to_the_moved_port_and_trusts_the_sandbox_ca() -> None:
    o = opening("alb_https", "https://www.sandbox.example.com/", MOVED)
    words = shlex.split(o.curl)
    assert words[:3] == ["curl", "--cacert", "/tmp/ca.pem"]
    assert words[3:] == [
        "--connect-to",
        "www.sandbox.example.com:443:127.151.0.2:8443",
        "https://www.sandbox.example.com/",
    ]
    assert o.local_url == "https://127.151.0.2:8443/"


def test_on_aws_a_url_opens_as_it_is() -> None:
    o = opening("alb_http", "http://x.elb.amazonaws.com/", None)
    assert (o.local_url, o.curl, o.address) == (
        "http://x.elb.amazonaws.com/",
        "curl http://x.elb.amazonaws.com/",
        None,
    )
    # a name the sandbox does not serve is shown as it is too
    assert opening("x", "http://other.example/", VIEW).curl == "curl http://other.example/"


def test_view_from_state_keeps_loopback_names_only() -> None:
    view = view_from_state({"names": NAMES, "lb_ports": {"80": 8080}, "dns": "127.0.0.1:1"})
    assert "d-db.abc.us-east-1.rds.amazonaws.com" not in view.names
    assert view.lb_ports == {80: 8080} and view.dns == "127.0.0.1:1"


def test_link_artifact_descriptions_carry_the_curl_line() -> None:
    url = {"alb_http": "http://d-alb-1.us-east-1.elb.amazonaws.com/"}
    here = {k: o.curl for k, o in openings(url, MOVED).items()}
    (link,) = url_links("d", url, here)
    assert link.url == url["alb_http"] and "on this machine: `curl --connect-to" in link.description
    (plain,) = url_links("d", url)  # on AWS: no such line
    assert "curl" not in plain.description


# -- status: the verdict from facts -----------------------------------------------------------
def healthy_facts() -> Facts:
    web = [InstanceFact(id=f"i-{n}", role="web", state="running") for n in (1, 2)]
    return Facts(
        deployment="d",
        region="us-east-1",
        instances=web,
        alb=AlbFact(
            name="d-alb",
            arn="arn:alb",
            dns_name="d-alb-1.us-east-1.elb.amazonaws.com",
            state="active",
            listeners=[80, 443],
            target_group="d-tg",
            targets=[TargetFact(id=i.id, port=8080, state="healthy") for i in web],
        ),
        certificates=[
            CertificateFact(arn="arn:c", domain="www.sandbox.example.com", status="ISSUED")
        ],
        beanstalk=[
            BeanstalkFact(
                name="d-env",
                status="Ready",
                health="Green",
                cname="d-env.us-east-1.elasticbeanstalk.com",
            )
        ],
        databases=[DatabaseFact(id="d-db", status="available", endpoint="d-db.x", port=3306)],
        web_group=GroupFact(
            id="sg-web",
            name="d-web",
            rules=[
                *[
                    RuleFact(protocol="tcp", from_port=p, to_port=p, source="198.51.100.10/32")
                    for p in (22, 80, 8080)
                ],
                RuleFact(protocol="tcp", from_port=8080, to_port=8080, source="sg-alb"),
            ],
        ),
        alb_group_id="sg-alb",
        ingress_cidr="198.51.100.10/32",
        web_domain="www.sandbox.example.com",
        beanstalk_domain="eb.sandbox.example.com",
    )


def judge(f: Facts) -> StatusReport:
    entries = [UrlEntry(**o.as_dict()) for o in openings(urls(f), VIEW).values()]
    return evaluate(f, entries, VIEW.dns, "2025-01-01T00:00:00+00:00")


def test_a_healthy_estate_exits_0_with_its_urls() -> None:
    r = judge(healthy_facts())
    assert (r.verdict, r.exit_code, r.problems) == ("healthy", 0, [])
    assert [u.name for u in r.urls] == ["alb_http", "alb_https", "beanstalk_http"]
    assert all(u.curl.startswith("curl --") for u in r.urls)
    text = table(r)
    assert "deployment d (us-east-1): healthy" in text
    assert (
        "2/2 healthy" in text and "--resolve www.sandbox.example.com:443:127.151.0.2 https:" in text
    )


def test_a_stopped_instance_is_degraded_and_named() -> None:
    f = healthy_facts()
    f.instances[0].state = "stopped"
    assert f.alb is not None
    f.alb.targets[0].state, f.alb.targets[0].reason = "unused", "Target.InvalidState"
    r = judge(f)
    assert (r.verdict, r.exit_code) == ("degraded", 1)
    assert r.problems[:2] == [
        "instance i-1 (web) is stopped",
        "target i-1:8080 of d-tg is unused (Target.InvalidState)",
    ]
    assert "problem: instance i-1 (web) is stopped" in table(r)
    assert "degraded: 2 problems (exit 1)" in table(r)
    assert "i-1" in markdown(r)


def test_drift_running_outside_the_target_group_and_foreign_ingress() -> None:
    f = healthy_facts()
    f.instances.append(InstanceFact(id="i-3", role="web", state="running"))
    assert f.web_group is not None
    f.web_group.rules.append(RuleFact(protocol="tcp", from_port=22, to_port=22, source="0.0.0.0/0"))
    f.web_group.rules.append(RuleFact(protocol="-1", source="10.0.0.0/8"))
    f.web_group.rules = [r for r in f.web_group.rules if r.source != "sg-alb"]
    r = judge(f)
    assert r.exit_code == 1
    assert r.drift == [
        "instance i-3 is running but not in the target group d-tg",
        "web security group sg-web admits tcp 22 from 0.0.0.0/0, which the flows do not set",
        "web security group sg-web admits all traffic from 10.0.0.0/8, which the flows do not set",
        "web security group sg-web no longer admits 8080 from the ALB's group sg-alb "
        "(the balancer cannot reach the instances)",
    ]
    assert r.problems[-4:] == r.drift


def test_an_unknown_controller_address_accepts_any_single_source() -> None:
    f = healthy_facts()
    f.ingress_cidr = None
    assert f.web_group is not None
    f.web_group.rules[0].source = "203.0.113.9/32"  # another controller's
    assert judge(f).exit_code == 0


def test_a_partial_deploy_is_healthy_and_states_are_named() -> None:
    f = healthy_facts()
    f.beanstalk, f.databases = [], []  # --stages 1-5
    assert judge(f).verdict == "healthy"
    f.certificates[0].status = "PENDING_VALIDATION"
    f.databases = [DatabaseFact(id="d-db", status="stopped")]
    f.beanstalk = [BeanstalkFact(name="d-env", status="Ready", health="Red")]
    assert judge(f).problems == [
        "certificate www.sandbox.example.com is PENDING_VALIDATION",
        "Beanstalk environment d-env health is Red",
        "RDS instance d-db is stopped",
    ]


def test_nothing_deployed_exits_0_and_says_so() -> None:
    r = judge(Facts(deployment="d", region="us-east-1"))
    assert (r.verdict, r.exit_code, r.deployed, r.urls) == ("nothing deployed", 0, False, [])
    assert "nothing deployed" in table(r)


def test_the_json_schema_is_stable() -> None:
    got = json.loads(as_json(judge(healthy_facts())))
    assert got["schema"] == SCHEMA
    assert list(got) == [
        "schema",
        "deployment",
        "region",
        "verdict",
        "exit_code",
        "deployed",
        "problems",
        "instances_by_state",
        "instances",
        "alb",
        "certificates",
        "beanstalk",
        "databases",
        "web_group",
        "drift",
        "urls",
        "sandbox",
        "sandbox_dns",
        "checked_at",
    ]
    assert set(got["urls"][0]) == {"name", "url", "local_url", "curl", "address"}
    assert got["instances_by_state"] == {"running": 2}


# -- messages ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("3-1", "stages=3-1: a range must go up, e.g. 1-3"),
        ("1,5-2", "stages=1,5-2: 5-2: a range must go up, e.g. 2-5"),
        ("12-15", "stages=12-15: unknown stage(s) 12-15; stages are 1-11"),
        ("0,3", "stages=0,3: unknown stage(s) 0; stages are 1-11"),
    ],
)
def test_stage_ranges_are_named_as_typed(spec: str, message: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_stages(spec)
    assert str(info.value) == message and info.value.field == "stages"


def test_an_option_whose_help_says_its_default_shows_no_other() -> None:
    from cyclopts import Parameter

    from tasks.cli.flow_options import one_default

    said = one_default(str | None, "EC2 instance type (default: the settings').")
    assert get_args(said)[0] == str | None
    assert isinstance(get_args(said)[1], Parameter) and get_args(said)[1].show_default is False
    assert one_default(int, "Web instances to launch.") is int
    assert Annotated  # the form cyclopts reads


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info: Any = sys.exc_info()
    return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "%r", (exc,), info)


def test_a_one_line_error_is_logged_without_its_traceback() -> None:
    quiet, loud = _record(BlockNotFound("no block")), _record(FleetError("a bug"))
    assert OneLineFilter().filter(quiet) and OneLineFilter().filter(loud)
    assert quiet.exc_info is None and "Traceback" not in logging.Formatter().format(quiet)
    assert loud.exc_info is not None and "Traceback" in logging.Formatter().format(loud)
