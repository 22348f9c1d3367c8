"""Names of the ALB stage's resources within AWS limits, without a network
(the stage against a sandbox: tests/integration/test_stage_alb_tls.py)."""

from __future__ import annotations

from blocks.settings import FleetSettings
from tasks.aws.elbv2 import elb_name
from tasks.aws.s3 import log_bucket_name


def test_names_fit_elb_limits() -> None:
    long = FleetSettings(deployment_name="a" * 41)
    for suffix in ("alb", "tg"):
        name = elb_name(long, suffix)
        assert len(name) <= 32 and name.endswith(f"-{suffix}")
    assert len(log_bucket_name(long, "123456789012")) <= 63
