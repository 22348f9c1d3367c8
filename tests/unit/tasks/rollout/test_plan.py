"""The rollout's pure planning: Ansible's `serial` waves, SSM's MaxErrors per wave, the
recipe's version and the report's host states."""

from __future__ import annotations

import pytest

from blocks.install_steps import InstallStep
from blocks.settings import DEFAULT_INSTALL_STEPS
from tasks.planning import PlanError
from tasks.rollout.plan import (
    RolloutState,
    check_request,
    errors_allowed,
    parse_max_errors,
    parse_waves,
    plan_waves,
    recipe_version,
    wave_size,
)
from tasks.rollout.report import markdown, summary_line, wave_rows

HOSTS = [f"i-{n:02d}" for n in range(12)]


def sizes(n: int, spec: object) -> list[int]:
    return [len(w) for w in plan_waves([f"i-{k}" for k in range(n)], parse_waves(spec))]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "spec", "want"),
    [
        (12, [1, "25%"], [1, 3, 3, 3, 2]),
        (12, "1,10%,50%,100%", [1, 1, 6, 4]),  # 10% of 12 is 1.2 -> 1
        (10, "1,10%,50%,100%", [1, 1, 5, 3]),
        (3, "10%", [1, 1, 1]),  # a percent rounds down but a wave has at least one host
        (5, "2", [2, 2, 1]),  # the last size repeats
        (4, "100%", [4]),
        (4, "10", [4]),  # a size beyond the fleet takes what is left
        (1, "1,10%,50%,100%", [1]),
        (0, "1", []),
    ],
)
def test_waves_follow_ansible_serial(n: int, spec: object, want: list[int]) -> None:
    assert sizes(n, spec) == want


def test_waves_keep_the_hosts_order_and_place_each_once() -> None:
    waves = plan_waves(HOSTS, parse_waves([1, "25%"]))
    assert [h for w in waves for h in w] == HOSTS


def test_wave_size_percent_is_floored_to_at_least_one() -> None:
    assert wave_size(("percent", 33.0), 10) == 3
    assert wave_size(("percent", 1.0), 10) == 1
    assert wave_size(("count", 7.0), 3) == 7


@pytest.mark.parametrize(
    ("spec", "wave", "allowed"),
    [("0", 5, 0), (2, 5, 2), ("10%", 12, 1), ("10%", 5, 0), ("50%", 3, 1), ("100%", 3, 3)],
)
def test_max_errors_per_wave(spec: object, wave: int, allowed: int) -> None:
    assert errors_allowed(parse_max_errors(spec), wave) == allowed  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"waves": "0"}, "waves"),
        ({"waves": "1,0%"}, "waves"),
        ({"waves": "150%"}, "waves"),
        ({"waves": ""}, "waves"),
        ({"waves": "1,x"}, "waves"),
        ({"waves": [True]}, "waves"),
        ({"max_errors": "120%"}, "max_errors"),
        ({"max_errors": "-1"}, "max_errors"),
        ({"max_errors": "many"}, "max_errors"),
        ({"canary_wait": -1.0}, "canary_wait"),
        ({"poll_s": 0.0}, "poll_s"),
        ({"health_timeout_s": float("nan")}, "health_timeout_s"),
    ],
)
def test_bad_input_names_the_field(kw: dict[str, object], field: str) -> None:
    args: dict[str, object] = {
        "waves": "1,10%,50%,100%",
        "max_errors": "0",
        "canary_wait": 0.0,
        "poll_s": 1.0,
        "health_timeout_s": 60.0,
    }
    args.update(kw)
    with pytest.raises(PlanError) as err:
        check_request(**args)  # type: ignore[arg-type]
    assert err.value.field == field
    assert field in str(err.value) and "\n" not in str(err.value)


def test_recipe_version_changes_with_any_step() -> None:
    base = recipe_version(DEFAULT_INSTALL_STEPS)
    assert base == recipe_version(list(DEFAULT_INSTALL_STEPS)) and len(base) == 12
    changed = [*DEFAULT_INSTALL_STEPS[:-1], InstallStep(name="verify", command="true")]
    assert recipe_version(changed) != base


def test_state_and_report_say_which_host_is_on_which_version() -> None:
    waves = plan_waves(HOSTS[:4], parse_waves([1, 2]))
    state = RolloutState.start(waves, "new", {"i-03": "old"})
    state.hosts["i-00"].state, state.hosts["i-00"].version = "upgraded", "new"
    state.hosts["i-01"].state, state.hosts["i-01"].reason = "failed", "step install exited 100"
    state.hosts["i-01"].version = "unknown"
    state.stopped_at = 2
    assert state.counts() == {"upgraded": 1, "failed": 1, "untouched": 2}
    assert state.by_state("untouched") == ["i-02", "i-03"]
    assert state.versions() == {"new": 1, "unknown": 2, "old": 1}
    assert [r["state"] for r in wave_rows(state, 2)] == ["failed", "untouched"]
    text = markdown(state, "dep")
    assert "| `i-03` | 3 | untouched | `old` |" in text
    assert "stopped after wave 2 of 3" in summary_line(state)
