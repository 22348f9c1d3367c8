"""A chunk's work: a thread per host, a log file of its own, one line per host sent back.

No Prefect here: `run_chunk` runs in a forked worker process of `tasks.forked_workers`
(the `process` runner), in the task run's own thread (`thread`) or on a Dask worker; the
chunk task (`tasks.install_chunk`) is what Prefect sees. Arguments and result are plain
data; the SSH key is not among them (the config says where to read it; it is read here).
Each run writes `chunk-<index>-<pid>-<uuid8>.log` (workers are reused, so pid alone
repeats), samples RAM/swap/CPU at its start and end, and one chunk in ten takes one extra
sample at a random moment. Lines for the task run's log go through `emit(level, text)`:
failed hosts at once, installed ones in batches (`HostLines`). Hosts are never lost: the
fan-out (`tasks.remote.group`) reports a host whose thread blew up as failed with the error.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .models import ChunkResult, HostResult, Instance, ResourceSample
from .remote.config import HostInstallConfig
from .remote.group import ThreadingGroup
from .remote.key_source import with_key
from .resources import extra_sample_chance, format_sample, sample


def chunk_log(log_dir: str, index: int) -> tuple[logging.Logger, Path, logging.Handler]:
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    path = Path(log_dir) / f"chunk-{index:04d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger(f"tomcat_fleet.chunk.{path.stem}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, path, handler


Emit = Callable[[int, str], None]  # (logging level, line) for the task run's log


class HostLines:
    """Per-host result lines for the run log, sent in batches.

    Every line becomes a log record of the task run, sent to the API: at 1000 hosts, with
    one record per host, the flow took 1.15x its bare twin's install time in a benchmark,
    0.99x with these batches.
    A failed host is logged at once, on its own line; installed hosts are joined into one
    record every `max_lines` hosts or `every_s` seconds (checked as results arrive), and
    whatever is left at `flush()`.
    Thread-safe: results arrive from the chunk's threads."""

    def __init__(
        self,
        label: str,
        emit: Callable[[int, str], None],
        every_s: float = 1.0,
        max_lines: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.emit, self.every_s, self.max_lines = label, emit, every_s, max_lines
        self.clock = clock
        self.lines: list[str] = []
        self.since = clock()
        self.lock = threading.Lock()

    def add(self, level: int, line: str) -> None:
        if level > logging.INFO:
            self.emit(level, line)
            return
        with self.lock:
            self.lines.append(line)
            due = len(self.lines) >= self.max_lines or self.clock() - self.since >= self.every_s
            batch = self._take() if due else []
        if batch:
            self._send(batch)

    def flush(self) -> None:
        with self.lock:
            batch = self._take()
        if batch:
            self._send(batch)

    def _take(self) -> list[str]:
        batch, self.lines, self.since = self.lines, [], self.clock()
        return batch

    def _send(self, batch: list[str]) -> None:
        if len(batch) == 1:
            self.emit(logging.INFO, batch[0])
        else:
            self.emit(logging.INFO, f"{self.label}: {len(batch)} hosts: " + "; ".join(batch))


class _Both:
    """Writes a line to the chunk's file and to the task run's log (through `emit`)."""

    def __init__(self, file_log: logging.Logger, emit: Emit) -> None:
        self.file_log, self.emit = file_log, emit

    def info(self, msg: str, *args: object) -> None:
        self.file_log.info(msg, *args)
        self.emit(logging.INFO, msg % args if args else msg)


def run_chunk(
    label: str,
    index: int,
    instances: list[Instance],
    cfg: HostInstallConfig,
    max_workers: int,
    log_dir: str,
    emit: Emit,
    extra_sample_fraction: float = 0.1,
    seed: int | None = None,
) -> ChunkResult:
    # paramiko logs tracebacks for connections it gives up on; each host's result already
    # carries the reason, so keep its transport chatter out of the run log
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    cfg = with_key(cfg)  # read here, in the worker: the key is never a task argument
    file_log, path, handler = chunk_log(log_dir, index)
    log = _Both(file_log, emit)
    t0 = time.monotonic()
    samples: list[ResourceSample] = [sample("chunk start", t0)]
    log.info(
        "%s: %d hosts, %d threads, pid %d; %s",
        label,
        len(instances),
        max_workers,
        os.getpid(),
        format_sample(samples[0]),
    )
    rng = random.Random(seed if seed is not None else os.getpid() ^ index)
    extra_at = extra_sample_chance(rng, extra_sample_fraction)
    # the random moment is "after the k-th host result": it always falls inside the chunk,
    # however long the chunk turns out to be
    extra_after = None if extra_at is None else max(1, math.ceil(extra_at * len(instances)))

    results: list[HostResult] = []
    host_lines = HostLines(label, emit)

    def on_result(_inst: Instance, res: HostResult) -> None:
        results.append(res)
        if len(results) == extra_after:
            samples.append(sample("chunk extra", t0))
        level = logging.INFO if res.status == "installed" else logging.WARNING
        line = (
            f"{res.instance_id} {res.public_ip}: {res.status}"
            f"{' (already serving)' if res.already_installed else ''} "
            f"(attempts {res.attempts}, {res.seconds:.1f}s)"
            f"{f' reason: {res.reason}' if res.reason else ''}"
        )
        file_log.log(level, "%s", line)  # one line per host in the chunk's own file
        host_lines.add(level, line)

    group = ThreadingGroup(
        instances, cfg, max_workers=max_workers, thread_name_prefix=f"chunk{index}"
    )
    group.install(log=file_log, on_result=on_result)
    host_lines.flush()
    samples.append(sample("chunk end", t0))
    seconds = time.monotonic() - t0
    ok = sum(r.status == "installed" for r in results)
    log.info(
        "%s done in %.1fs: %d installed, %d failed; %s",
        label,
        seconds,
        ok,
        len(results) - ok,
        format_sample(samples[-1]),
    )
    file_log.removeHandler(handler)
    handler.close()
    return ChunkResult(
        index=index,
        pid=os.getpid(),
        log_file=str(path),
        seconds=seconds,
        hosts=results,
        samples=sorted(samples, key=lambda s: s.at_s),
        ended_at=time.time(),
    )
