"""The eleven deploy stages: names, what each needs, and the seed's barrier group of each.
Plain data (no Prefect), shared by the deploy flow and the scripts that drive it."""

from __future__ import annotations

NAMES = {
    1: "launch-instances",
    2: "install-tomcat",
    3: "save-inventory",
    4: "application-load-balancer",
    5: "tls-listener",
    6: "traffic-alb",
    7: "elastic-beanstalk",
    8: "rds",
    9: "jumphost-mysql-check",
    10: "traffic-beanstalk-http",
    11: "traffic-beanstalk-https",
}
NEEDS: dict[int, tuple[int, ...]] = {
    1: (),
    2: (1,),
    3: (2,),
    4: (3,),
    5: (4,),
    6: (5,),
    7: (5,),
    8: (5,),
    9: (8,),
    10: (7,),
    11: (7, 5),
}
SEED_GROUP = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 6, 8: 6, 9: 7, 10: 7, 11: 7}

# Prefect task retries of each stage task in flows/deploy.py (`stage_task(n, retries=...)`):
# a failed stage is re-run whole this many more times (tests check the flow matches)
TASK_RETRIES: dict[int, int] = {n: (1 if n in (1, 4, 5, 6, 9, 10, 11) else 0) for n in NAMES}
