"""install-tomcat's input validation without a network: bad knobs name the field
(the flow against a sandbox: tests/integration/test_install_flow.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.inputs import validate_install as validate
from tasks.models import Instance
from tasks.planning import PlanError


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"desired_count": -1}, "desired_count"),
        ({"chunk_size": 10, "desired_count": 7}, "desired_count"),
        ({"runner": "fork"}, "runner"),
        ({"allow_failures": "lots"}, "allow_failures"),
        ({"runner": "dask"}, "dask_address"),
    ],
)
def test_bad_knobs_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    instances = [
        Instance(instance_id=f"i-{n:04d}", public_ip=f"127.100.9.{n}") for n in range(1, 61)
    ]
    args: dict[str, Any] = {
        "chunk_size": None,
        "max_workers": None,
        "desired_count": None,
        "runner": "process",
        "allow_failures": "0",
        "dask_address": None,
        **kwargs,
    }
    with pytest.raises(PlanError) as err:
        validate(instances, **args)
    assert err.value.field == field and field in str(err.value)
