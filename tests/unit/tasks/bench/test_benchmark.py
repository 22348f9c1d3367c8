"""The benchmark flow: matrix parsing and validation, statistics and /proc parsers (pure);
its end-to-end run on a sandbox child is tests/integration/test_benchmark_flow.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tasks.bench.matrix import (
    NAMED_MATRICES,
    MatrixError,
    Scenario,
    check,
    load_matrix,
    parse_entry,
    parse_notation,
    plan_matrix,
    ratio,
    resolve,
    scenario_from_notation,
    spread,
    summarize_runs,
)
from tasks.hostmonitor import (
    HostMonitor,
    cpu_percent_of,
    join_timeline,
    parse_psi,
    parse_vmstat,
    summarize_span,
    swap_rates,
)

# ---------------------------------------------------------------- notation and matrices


def test_parse_notation() -> None:
    assert parse_notation("250/50") == (250, 50, None)
    assert parse_notation(" 250 / 0 @ 4 ") == (250, 0, 4)
    for bad in ("250", "250/", "a/b", "250/50@", "-1/0"):
        with pytest.raises(ValueError, match="notation"):
            parse_notation(bad)


def test_seed_notation_means_processes_and_pooled() -> None:
    sc, reason = scenario_from_notation("250/50")
    assert reason is None
    assert (sc.hosts, sc.chunk_size, sc.desired_count) == (500, 2, 200)
    assert (sc.total_chunks, sc.pooled, sc.processes, sc.notation) == (250, 50, 200, "250/50")
    sc4, _ = scenario_from_notation("10/0@4", shape="seed")
    assert (sc4.hosts, sc4.chunk_size, sc4.desired_count, sc4.shape) == (40, 4, 10, "seed")


def test_notation_that_cannot_be_a_shape_is_a_reason() -> None:
    _, reason = scenario_from_notation("10/20")
    assert reason and "pooled cannot exceed" in reason
    _, reason = scenario_from_notation("10/0", chunk_size=2, hosts=7)
    assert reason and "needs 10 chunks" in reason


def test_resolve_fills_knobs_per_shape() -> None:
    flow = resolve(Scenario(hosts=40), cores=2)
    assert (flow.chunk_size, flow.max_workers, flow.desired_count) == (20, 20, 2)
    seed = resolve(Scenario(hosts=40, shape="seed"), cores=2)
    assert (seed.chunk_size, seed.max_workers, seed.desired_count) == (2, 2, 20)
    floor = resolve(Scenario(hosts=40, shape="floor"), cores=2)
    assert (floor.processes, floor.max_workers, floor.notation) == (1, 40, "1/0")
    kept = resolve(Scenario(hosts=40, chunk_size=4, desired_count=3), cores=2)
    assert (kept.chunk_size, kept.max_workers, kept.desired_count) == (4, 4, 3)


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ({"hosts": 10, "chunk_size": 5, "desired_count": 3}, "desired_count", "larger than"),
        ({"hosts": 10, "chunk_size": 4, "max_workers": 2}, "max_workers", "max_workers=2 <"),
        ({"hosts": 0}, "hosts", "at least 1"),
        ({"hosts": 0, "shape": "floor"}, "hosts", "at least 1"),
        ({"hosts": 4, "chunk_size": 0}, "chunk_size", "at least 1"),
        ("250/250", "desired_count", "at least 1"),
        ({"hosts": 4, "bogus": 1}, "bogus", "Extra inputs"),
        ({"hosts": 4, "shape": "dask"}, "shape", "flow"),
        ({"notation": "4/0", "colour": "red"}, "scenario", "unknown keys"),
        ("x/y", "scenario", "notation"),
        (42, "scenario", "notation string or a mapping"),
    ],
)
def test_invalid_scenarios_are_rows_with_a_reason(entry: Any, field: str, words: str) -> None:
    [p] = plan_matrix([entry], cores=2, include_peers=False)
    assert not p.valid
    assert p.reason is not None
    assert p.reason.startswith(field + ":"), p.reason
    assert words in p.reason


def test_valid_scenarios_and_the_default_shape() -> None:
    rows = plan_matrix([{"hosts": 40}, "20/10@2"], cores=2, include_peers=False)
    assert [p.valid for p in rows] == [True, True]
    assert rows[0].default and not rows[1].default
    assert check(rows[1].scenario) is None


def test_peers_add_bare_twins_and_one_floor_per_host_count() -> None:
    rows = plan_matrix(
        [{"hosts": 40}, "20/10@2", {"hosts": 0}, {"hosts": 10, "shape": "seed"}], cores=2
    )
    shapes = [(p.scenario.hosts, p.scenario.shape, p.peer) for p in rows]
    assert shapes.count((40, "bare", True)) == 2  # a twin per valid flow scenario
    assert shapes.count((40, "floor", True)) == 1
    assert shapes.count((10, "floor", True)) == 1
    assert shapes.count((10, "seed", True)) == 0  # peers are bare twins and floors only
    assert shapes.count((10, "bare", True)) == 0  # a seed scenario gets no twin
    assert sum(not p.valid for p in rows) == 1  # the invalid one gets no peers


def test_same_label_twice_is_made_unique() -> None:
    rows = plan_matrix(["4/0", "4/0"], cores=2, include_peers=False)
    assert rows[0].scenario.label != rows[1].scenario.label


def test_named_matrices() -> None:
    entries, settings = load_matrix("nightly")
    assert len(entries) == 6 and settings["install_latency"] == 0.5
    planned = plan_matrix(entries, cores=2)
    assert all(p.valid for p in planned)
    assert sum(p.default for p in planned) == 1
    assert all(20 <= p.scenario.hosts <= 60 for p in planned)
    seed = plan_matrix(load_matrix("seed")[0], cores=2, include_peers=False)
    assert [p.scenario.notation for p in seed][:3] == ["250/0", "250/25", "250/50"]
    assert set(NAMED_MATRICES) >= {"nightly", "seed"}


def test_matrix_files(tmp_path: Path) -> None:
    y = tmp_path / "m.yaml"
    y.write_text("install_latency: 2\nscenarios:\n  - 250/50\n  - {hosts: 6, chunk_size: 3}\n")
    entries, settings = load_matrix(str(y))
    assert entries == ["250/50", {"hosts": 6, "chunk_size": 3}] and settings == {
        "install_latency": 2
    }
    j = tmp_path / "m.json"
    j.write_text(json.dumps([{"notation": "4/1", "chunk_size": 3, "shape": "seed"}]))
    [entry] = load_matrix(str(j))[0]
    sc, reason = parse_entry(entry)
    assert reason is None and (sc.hosts, sc.desired_count, sc.shape) == (12, 3, "seed")
    assert load_matrix([{"hosts": 3}])[0] == [{"hosts": 3}]
    for bad, words in (("nope", "neither"), (str(j) + "x", "neither")):
        with pytest.raises(MatrixError, match=words):
            load_matrix(bad)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(MatrixError, match=r"bad\.json"):
        load_matrix(str(tmp_path / "bad.json"))
    (tmp_path / "map.yaml").write_text("foo: 1\n")
    with pytest.raises(MatrixError, match="scenarios"):
        load_matrix(str(tmp_path / "map.yaml"))


def test_medians_min_max_over_repeats() -> None:
    assert spread([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    assert spread([4.0, 1.0]) == (2.5, 1.0, 4.0)
    assert spread([]) is None
    runs = [
        {"install_s": 10.0, "hosts_failed": 0, "cpu_per_core": [10.0, 50.0]},
        {"install_s": 12.5, "hosts_failed": 2, "cpu_per_core": [30.0, 70.0]},
        {"install_s": 11.0, "hosts_failed": 1, "cpu_per_core": [20.0, 60.0]},
    ]
    out = summarize_runs(runs, ["install_s", "hosts_failed", "peak_rss_mb"])
    assert (out["install_s"], out["install_s_min"], out["install_s_max"]) == (11, 10, 12.5)
    assert out["hosts_failed"] == 1 and isinstance(out["hosts_failed"], int)
    assert out["peak_rss_mb"] is None
    assert out["cpu_per_core"] == [20.0, 60.0]
    assert ratio(5.0, 2.0) == 2.5 and ratio(None, 2.0) is None and ratio(1.0, 0.0) is None


# ---------------------------------------------------------------- /proc parsers

VMSTAT = """nr_free_pages 1030036
nr_zone_inactive_anon 256538
pswpin 120
pswpout 4500
garbage line here
workingset_refault_anon x
"""
PSI = """some avg10=1.50 avg60=0.75 avg300=0.10 total=123456
full avg10=0.25 avg60=0.00 avg300=0.00 total=789
"""


def test_parse_vmstat() -> None:
    vm = parse_vmstat(VMSTAT)
    assert vm["pswpin"] == 120 and vm["pswpout"] == 4500 and vm["nr_free_pages"] == 1030036
    assert "garbage" not in vm and "workingset_refault_anon" not in vm
    assert parse_vmstat("") == {}


def test_parse_psi() -> None:
    psi = parse_psi(PSI)
    assert psi["some"] == {"avg10": 1.5, "avg60": 0.75, "avg300": 0.1, "total": 123456.0}
    assert psi["full"]["avg10"] == 0.25
    assert parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")["some"]["avg10"] == 0
    assert parse_psi("") == {} and parse_psi("cpu avg10=1\n") == {}


def test_swap_rates_and_cpu() -> None:
    prev, cur = parse_vmstat(VMSTAT), {"pswpin": 220, "pswpout": 4500}
    assert swap_rates(prev, cur, 2.0) == (50.0, 0.0)
    assert swap_rates(prev, {"pswpout": 1}, 1.0) == (None, 0.0)  # counter reset: not negative
    assert swap_rates(prev, cur, 0.0) == (None, None)
    assert cpu_percent_of(1.0, 1.5, 2.0) == 25.0
    assert cpu_percent_of(1.0, 1.5, 0.0) == 0.0


def test_timeline_join_and_span_summary() -> None:
    samples = [
        {"at_s": t, "swap_in_per_s": s, "swap_out_per_s": 0.0, "kswapd_cpu_pct": None,
         "psi_some_avg10": 0.5 * t, "psi_full_avg10": None, "swap_used_mb": 10.0 + t,
         "cpu_per_core": [t * 10, 100.0]}
        for t, s in ((0.5, 1.0), (1.5, 5.0), (2.5, 3.0), (3.5, 0.0))
    ]  # fmt: skip
    joined = join_timeline(samples, [("a", 0.0, 2.0), ("b", 2.2, 3.0)])
    assert [s["scenario"] for s in joined] == ["a", "a", "b", ""]
    span = summarize_span(samples, 0.0, 2.0)
    assert span["swap_in_per_s"] == 5.0 and span["swap_used_mb"] == 11.5
    assert span["kswapd_cpu_pct"] is None and span["psi_some_avg10"] == 0.75
    assert span["cpu_per_core"] == [10.0, 100.0] and span["cpu_mean_pct"] == 55.0
    assert span["host_samples"] == 2
    assert summarize_span(samples, 10, 11)["cpu_per_core"] == []


def test_host_monitor_samples_this_host(tmp_path: Path) -> None:
    mon = HostMonitor(interval=0.05).start()
    time.sleep(0.4)
    samples = mon.stop()
    assert len(samples) >= 3
    s = samples[-1]
    assert s["at_s"] > 0 and s["t"] > 1e9 and s["swap_used_mb"] >= 0
    assert s["swap_in_per_s"] is not None and len(s["cpu_per_core"]) >= 1
    # a /proc without PSI or vmstat still samples (fields None)
    fake = HostMonitor(interval=0.05, proc_root=str(tmp_path)).start()
    time.sleep(0.15)
    [*_, f] = fake.stop()
    assert f["psi_some_avg10"] is None and f["swap_in_per_s"] is None
    assert not fake.psi_available
    with pytest.raises(ValueError):
        HostMonitor(interval=0)


# ---------------------------------------------------------------- end to end


def test_nightly_deployment_is_scheduled() -> None:
    from flows.benchmark import NIGHTLY_CRON, nightly_deployment

    dep = nightly_deployment()
    assert dep.name == "nightly" and dep.flow_name == "benchmark"
    assert dep.parameters["matrix"] == "nightly"
    assert NIGHTLY_CRON in str(dep.schedules[0].schedule)


# ---------------------------------------------------------------- fleet access


def test_children_check_host_keys_tofu_unless_told_otherwise(tmp_path: Path) -> None:
    """The same command on both targets: tofu by default, insecure only as a parameter."""
    from tasks.bench.run import child_command

    for entry in ({"hosts": 4}, {"hosts": 4, "shape": "seed"}, {"hosts": 4, "shape": "floor"}):
        [p] = plan_matrix([entry], cores=2, include_peers=False)
        cmd = child_command(p, tmp_path / "inv.json", tmp_path, str(tmp_path / "state"))
        i = cmd.index("--host-key-policy")
        assert cmd[i + 1] == "tofu" and "insecure" not in cmd, cmd
        cmd = child_command(p, tmp_path / "inv.json", tmp_path, "s", host_key_policy="insecure")
        assert cmd[cmd.index("--host-key-policy") + 1] == "insecure"


def test_bench_child_takes_the_host_key_policy() -> None:
    import inspect

    from tasks.bench.child import child

    assert inspect.signature(child).parameters["host_key_policy"].default == "tofu"


def test_benchmark_fleet_opens_22_and_8080_to_the_controller_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """launch_fleet's rules come from controller_cidr (here TOMCAT_FLEET_INGRESS_CIDR),
    never 0.0.0.0/0; AWS is faked at the tasks.aws.ec2 functions it calls."""
    import tasks.aws
    import tasks.aws.ec2 as ec2
    from blocks.settings import FleetSettings
    from tasks.bench.run import launch_fleet
    from tasks.models import Instance

    rules: list[tuple[list[str], list[int], str]] = []

    class FakeAws:
        api_calls = 7

        class stats:
            retries = 0

        def __init__(self, settings: Any) -> None:
            pass

    def authorize(aws: Any, groups: list[str], ports: list[int], cidr_for: Any) -> None:
        rules.append((groups, list(ports), *{cidr_for(p) for p in ports}))

    monkeypatch.setattr(tasks.aws, "Aws", FakeAws)
    monkeypatch.setattr(ec2, "ensure_key_pair", lambda aws, s: tmp_path / "k.pem")
    monkeypatch.setattr(ec2, "ensure_security_group", lambda aws, s: "sg-1")
    monkeypatch.setattr(ec2, "authorize_ingress", authorize)
    monkeypatch.setattr(
        ec2, "launch_instances", lambda aws, s, n, sg, client_token: [f"i-{k}" for k in range(n)]
    )
    monkeypatch.setattr(
        ec2,
        "wait_running",
        lambda aws, ids, timeout_s: [
            Instance(instance_id=i, public_ip="192.0.2.1", private_ip="10.0.0.1") for i in ids
        ],
    )
    settings = FleetSettings(state_dir=str(tmp_path), ingress_cidr="203.0.113.7")
    rows, calls, _ = launch_fleet(settings, 2)
    assert [r["instance_id"] for r in rows] == ["i-0", "i-1"] and calls == 7
    assert rules == [(["sg-1"], [22, 8080], "203.0.113.7/32")]


def test_flow_rows_carry_their_ratio_to_the_bare_twin() -> None:
    from tasks.bench.report import summary_rows

    planned = plan_matrix([{"hosts": 24}], cores=2)
    assert [p.scenario.shape for p in planned] == ["flow", "bare", "floor"]
    runs = [
        {"scenario": p.scenario.label, "shape": p.scenario.shape, "status": "ok",
         "install_s": s, "peak_rss_mb": m * 2, "peak_pss_mb": m}
        for p, s, m in zip(planned, (4.0, 2.5, 2.0), (300.0, 100.0, 50.0), strict=True)
    ]  # fmt: skip
    rows = {r["shape"]: r for r in summary_rows(planned, runs, repeat=1)}
    assert rows["flow"]["install_x_bare"] == 1.6 and rows["flow"]["pss_x_bare"] == 3.0
    assert rows["flow"]["install_x_floor"] == 2.0 and rows["bare"]["install_x_bare"] is None
