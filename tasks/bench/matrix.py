"""Benchmark matrices: scenarios in the seed's notation, validation, medians over repeats.

Pure (no Prefect, no I/O beyond reading a matrix file). A scenario is one install shape
on a number of hosts, run by one implementation:

- ``flow``:  the `install-tomcat` flow (ProcessPoolTaskRunner of `desired_count` processes,
  `chunk_size` hosts per chunk, `max_workers` threads per chunk);
- ``seed``:  the replaced system's implementation: a multiprocessing pool of
  `desired_count` processes, one chunk per process task, threads inside, no Prefect;
- ``floor``: one process, one thread pool, nothing else (1 process x hosts threads);
- ``bare``:  the flow's exact shape (same chunks, threads, processes) on a plain fork
  pool, no Prefect (the seed's implementation): ``flow ÷ bare`` is Prefect's own cost.
  Every flow scenario gets its bare twin as a peer; a bare twin of a seed-shaped flow
  scenario ("12/0@2") is the seed's shape itself.

The seed wrote shapes as "processes/pooled": "250/50" is 250 chunks (processes) of which
50 wait in the pool, i.e. ``desired_count = 200``; with ``chunk_size = 2`` that is 500 hosts.
Matrix entries are either that notation (``"250/50"``, ``"250/50@4"`` for chunk_size 4, or
``{"notation": "250/50", "chunk_size": 2, ...}``) or explicit knobs
(``{"hosts": 40, "chunk_size": 4, "desired_count": 10}``). A knob left out is chosen the way
the install flow chooses it (the project's default shape).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import FleetError
from tasks.planning import PlanError, default_shape, plan_pool

Shape = Literal["flow", "bare", "seed", "floor"]
SHAPES: tuple[Shape, ...] = ("flow", "bare", "seed", "floor")
SEED_CHUNK_SIZE = 2
"""The seed's chunk: two hosts per process."""
FLOOR_MAX_THREADS = 500


class MatrixError(FleetError, ValueError):
    """A matrix that cannot be read at all (unknown name, unreadable file, wrong layout)."""


class Scenario(BaseModel):
    """One shape on `hosts` hosts. None knobs are resolved by `resolve`."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    hosts: int
    chunk_size: int | None = None
    max_workers: int | None = None
    desired_count: int | None = None
    shape: Shape = "flow"
    repeat: int | None = Field(None, ge=1, description="overrides the run's repeat")

    @property
    def total_chunks(self) -> int:
        if self.shape == "floor":
            return 1
        if not self.chunk_size or self.chunk_size < 1 or self.hosts < 1:
            return 0
        return math.ceil(self.hosts / self.chunk_size)

    @property
    def processes(self) -> int:
        """Processes running at once (the x axis of the plot)."""
        if self.shape == "floor":
            return 1
        return max(0, min(self.desired_count or 0, self.total_chunks))

    @property
    def pooled(self) -> int:
        return max(0, self.total_chunks - (self.desired_count or 0))

    @property
    def notation(self) -> str:
        """The seed's "processes/pooled", e.g. "250/50" (floor: "1/0")."""
        if self.shape == "floor":
            return "1/0"
        return f"{self.total_chunks}/{self.pooled}"

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.total_chunks and 1 <= (self.desired_count or 0) <= self.total_chunks:
            wide = f" w{self.max_workers}" if self.max_workers != self.chunk_size else ""
            return f"{self.hosts}h {self.notation} c{self.chunk_size}{wide}"
        return f"{self.hosts}h c{self.chunk_size} w{self.max_workers} d{self.desired_count}"

    def describe(self) -> str:
        """e.g. "10 procs x chunk 4 x 4 threads" (the seed's way of naming a shape)."""
        if self.shape == "floor":
            return f"1 proc x {self.max_workers} threads"
        return f"{self.processes} procs x chunk {self.chunk_size} x {self.max_workers} threads" + (
            f", {self.pooled} pooled" if self.pooled else ""
        )


@dataclass(frozen=True)
class Planned:
    """A scenario as it will run (knobs resolved), or why it will not."""

    scenario: Scenario
    reason: str | None = None  # None: valid
    default: bool = False  # the project's default shape for these hosts on this machine
    peer: bool = False  # added by `with_peers`, not named in the matrix

    @property
    def valid(self) -> bool:
        return self.reason is None

    @property
    def key(self) -> str:
        return f"{self.scenario.label} [{self.scenario.shape}]"


# ---------------------------------------------------------------- named matrices

NAMED_MATRICES: dict[str, dict[str, Any]] = {
    # about 5 minutes on a 2-core machine at install latency 0.5 s (the flow's 12-process
    # shape dominates: each pool worker imports Prefect)
    "nightly": {
        "install_latency": 0.5,
        "scenarios": [
            {"name": "default", "hosts": 24},
            {"name": "24h 4/0 c6", "hosts": 24, "chunk_size": 6, "desired_count": 4},
            {"name": "24h 8/0 c3", "hosts": 24, "chunk_size": 3, "desired_count": 8},
            "12/0@2",
            "12/4@2",
            "12/8@2",
        ],
    },
    # the seed's own experiments: 250 processes of chunk 2 (500 hosts), pooled more and more
    "seed": {
        "install_latency": 2.0,
        "scenarios": ["250/0", "250/25", "250/50", "250/125", "250/200"],
    },
}

_NOTATION_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*(?:@\s*(\d+)\s*)?$")


def parse_notation(text: str) -> tuple[int, int, int | None]:
    """ "250/50" -> (250 chunks, 50 pooled, None); "250/50@4" -> (250, 50, 4)."""
    m = _NOTATION_RE.match(text)
    if not m:
        raise ValueError(
            f"{text!r} is not in the seed's notation "
            '"processes/pooled" (e.g. "250/50", or "250/50@4" for chunk_size 4)'
        )
    return int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None


def scenario_from_notation(
    notation: str,
    chunk_size: int | None = None,
    shape: Shape = "flow",
    hosts: int | None = None,
    max_workers: int | None = None,
    name: str = "",
    repeat: int | None = None,
) -> tuple[Scenario, str | None]:
    """The scenario a notation describes, and a reason when it is not a usable shape."""
    chunks, pooled, at_chunk = parse_notation(notation)
    chunk = chunk_size or at_chunk or SEED_CHUNK_SIZE
    n_hosts = chunks * chunk if hosts is None else hosts
    sc = Scenario(
        name=name or f"{n_hosts}h {chunks}/{pooled} c{chunk}",
        hosts=n_hosts,
        chunk_size=chunk,
        max_workers=max_workers,
        desired_count=chunks - pooled,
        shape=shape,
        repeat=repeat,
    )
    reason = None
    if pooled > chunks:
        reason = (
            f"notation: {notation!r} pools {pooled} of {chunks} chunks; "
            "pooled cannot exceed the processes"
        )
    elif hosts is not None and chunk > 0 and math.ceil(hosts / chunk) != chunks:
        reason = (
            f"notation: {notation!r} needs {chunks} chunks but hosts={hosts} at "
            f"chunk_size={chunk} gives {math.ceil(hosts / chunk)}"
        )
    return sc, reason


def parse_entry(entry: Any) -> tuple[Scenario, str | None]:
    """One matrix entry -> (scenario, reason it is invalid or None). Never raises."""
    try:
        if isinstance(entry, str):
            return scenario_from_notation(entry)
        if not isinstance(entry, dict):
            raise ValueError(f"a scenario is a notation string or a mapping, got {entry!r}")
        if "notation" in entry:
            rest = dict(entry)
            notation = str(rest.pop("notation"))
            unknown = set(rest) - {
                "chunk_size",
                "shape",
                "hosts",
                "max_workers",
                "name",
                "repeat",
            }
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)} next to notation")
            sc, reason = scenario_from_notation(notation, **rest)
            Scenario.model_validate(sc.model_dump())  # shape/repeat checks
            return sc, reason
        return Scenario.model_validate(entry), None
    except (ValueError, TypeError, ValidationError) as exc:
        if isinstance(exc, ValidationError):
            err = exc.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or "scenario"
            reason = f"{field}: {err['msg']} (got {err.get('input')!r})"
        else:
            reason = f"scenario: {exc}"
        name = entry.get("name", "") if isinstance(entry, dict) else ""
        return Scenario.model_construct(
            name=str(name or entry)[:60],
            hosts=0,
            chunk_size=None,
            max_workers=None,
            desired_count=None,
            shape="flow",
            repeat=None,
        ), reason


# ---------------------------------------------------------------- resolution, validation


def resolve(sc: Scenario, cores: int) -> Scenario:
    """Fill the knobs left out, as the install flow (flow, and its bare twin), the seed
    (seed: chunk 2, every chunk at once) or the floor (one process, one thread per host)
    would."""
    if sc.hosts < 1:
        return sc
    if sc.shape == "floor":
        return sc.model_copy(
            update={
                "chunk_size": sc.hosts,
                "max_workers": sc.max_workers or min(sc.hosts, FLOOR_MAX_THREADS),
                "desired_count": 1,
            }
        )
    if sc.shape == "seed":
        chunk = SEED_CHUNK_SIZE if sc.chunk_size is None else sc.chunk_size
        count = sc.desired_count
        if count is None:
            count = math.ceil(sc.hosts / chunk) if chunk > 0 else 1
    else:
        d_chunk, _, d_count = default_shape(sc.hosts, cores)
        chunk = d_chunk if sc.chunk_size is None else sc.chunk_size
        count = sc.desired_count
        if count is None:
            count = max(1, min(d_count, math.ceil(sc.hosts / chunk))) if chunk > 0 else d_count
    workers = chunk if sc.max_workers is None else sc.max_workers
    return sc.model_copy(
        update={"chunk_size": chunk, "max_workers": workers, "desired_count": count}
    )


def check(sc: Scenario) -> str | None:
    """Why a resolved scenario cannot be benchmarked, or None. Stricter than the install
    flow: max_workers < chunk_size is invalid here (the flow raises it with a warning, so
    the shape asked for is not the shape that would run)."""
    try:
        if sc.shape == "floor":
            plan_pool(sc.hosts, max(sc.hosts, 1), sc.max_workers or 1, 1)
            return None
        plan = plan_pool(sc.hosts, sc.chunk_size, sc.max_workers, sc.desired_count)  # type: ignore[arg-type]
    except PlanError as exc:
        return f"{exc.field}: {exc}"
    if plan.warnings:
        return (
            f"max_workers: max_workers={sc.max_workers} < chunk_size={sc.chunk_size}; fewer "
            "threads than hosts in a chunk serialises the chunk (the install flow would raise "
            "it to chunk_size with a warning); use max_workers >= chunk_size"
        )
    return None


def is_default(sc: Scenario, cores: int) -> bool:
    if sc.shape != "flow" or sc.hosts < 1:
        return False
    return (sc.chunk_size, sc.max_workers, sc.desired_count) == default_shape(sc.hosts, cores)


def plan_matrix(entries: Iterable[Any], cores: int, include_peers: bool = True) -> list[Planned]:
    """Parse, resolve and check every entry; with peers, add a seed twin of every valid
    flow scenario (the seed's implementation on the same shape) and one floor per host
    count. Invalid entries stay in the list with their reason."""
    planned: list[Planned] = []
    for entry in entries:
        sc, reason = parse_entry(entry)
        if reason is None:
            sc = resolve(sc, cores)
            reason = check(sc)
        labels = {(p.scenario.label, p.scenario.shape) for p in planned}
        if (sc.label, sc.shape) in labels:
            n = 2
            while (f"{sc.label} #{n}", sc.shape) in labels:
                n += 1
            sc = sc.model_copy(update={"name": f"{sc.label} #{n}"})
        planned.append(Planned(sc, reason, reason is None and is_default(sc, cores)))
    return with_peers(planned, cores) if include_peers else planned


def with_peers(planned: list[Planned], cores: int) -> list[Planned]:
    """A bare twin (same knobs, no Prefect) per valid flow scenario, one floor per host
    count."""
    out = list(planned)
    have = {(p.scenario.shape, _knobs(p.scenario)) for p in planned if p.valid}
    for p in planned:
        sc = p.scenario
        if p.valid and sc.shape == "flow" and ("bare", _knobs(sc)) not in have:
            twin = sc.model_copy(update={"shape": "bare"})
            out.append(Planned(twin, check(twin), peer=True))
            have.add(("bare", _knobs(sc)))
    for hosts in sorted({p.scenario.hosts for p in planned if p.valid}):
        if not any(
            p.valid and p.scenario.shape == "floor" and p.scenario.hosts == hosts for p in out
        ):
            floor = resolve(Scenario(name=f"{hosts}h floor", hosts=hosts, shape="floor"), cores)
            out.append(Planned(floor, check(floor), peer=True))
    return out


def _knobs(sc: Scenario) -> tuple[int, int | None, int | None, int | None]:
    return sc.hosts, sc.chunk_size, sc.max_workers, sc.desired_count


# ---------------------------------------------------------------- loading


def load_matrix(spec: str | Sequence[Any] | dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """A named matrix, a YAML/JSON file, or entries given directly -> (entries, settings).
    `settings` holds what the matrix suggests for the run (e.g. install_latency)."""
    if isinstance(spec, str):
        if spec in NAMED_MATRICES:
            data: Any = NAMED_MATRICES[spec]
        else:
            path = Path(spec)
            if not path.is_file():
                raise MatrixError(
                    f"matrix {spec!r} is neither a named matrix ({', '.join(NAMED_MATRICES)}) "
                    "nor a file"
                )
            data = _read(path)
    else:
        data = spec
    if isinstance(data, dict):
        if "scenarios" not in data or not isinstance(data["scenarios"], list):
            raise MatrixError("a matrix mapping needs a `scenarios` list")
        settings = {k: v for k, v in data.items() if k != "scenarios"}
        return list(data["scenarios"]), settings
    if isinstance(data, list):
        return list(data), {}
    raise MatrixError(f"a matrix is a list of scenarios or a mapping, got {type(data).__name__}")


def _read(path: Path) -> Any:
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except (ValueError, ImportError) as exc:  # json.JSONDecodeError and yaml.YAMLError
        raise MatrixError(f"matrix file {path}: {exc}") from None
    except Exception as exc:
        raise MatrixError(f"matrix file {path}: {exc}") from None


# ---------------------------------------------------------------- statistics


def spread(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(median, min, max) of the values, None when there are none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def summarize_runs(runs: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """For each metric: `<m>` (median over the runs), `<m>_min`, `<m>_max`; per-core CPU
    lists (`cpu_per_core`) become the median per core."""
    out: dict[str, Any] = {}
    for m in metrics:
        s = spread([r[m] for r in runs if r.get(m) is not None])
        out[m], out[f"{m}_min"], out[f"{m}_max"] = (
            tuple(_num(v) for v in s) if s else (None, None, None)
        )
    cores = [r["cpu_per_core"] for r in runs if r.get("cpu_per_core")]
    if cores:
        width = min(len(c) for c in cores)
        out["cpu_per_core"] = [
            round(statistics.median(c[i] for c in cores), 1) for i in range(width)
        ]
    return out


def _num(v: float) -> float | int:
    """Rounded to 2 places; whole numbers as int (counts stay counts)."""
    v = round(v, 2)
    return int(v) if v.is_integer() else v


def ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or not floor:
        return None
    return round(value / floor, 2)
