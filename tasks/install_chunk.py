"""The chunk task: one task on the pool, a thread per host inside, a log file of its own.

Runs in a pool worker process (or a thread, or a Dask worker). Arguments and result are
plain data; the SSH key is not among them (the config says where to read it, the task
reads it in its worker). Each run writes `chunk-<index>-<pid>-<uuid8>.log` (pool workers
are reused, so pid alone repeats), samples RAM/swap/CPU at its start and end, and one
chunk in ten takes one extra sample at a random moment. Hosts are never lost: the fan-out
(`tasks.remote.group`) reports a host whose thread blew up as failed with the error.
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

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

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


class HostLines:
    """Per-host result lines for the run log, sent in batches.

    Every record a task logs in a pool worker is formatted for the console and forwarded to
    the parent, which sends it to the API: at 1000 hosts, with one record per host, the
    flow took 1.15x its bare twin's install time in a benchmark, 0.99x with these batches.
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


class _Both(logging.LoggerAdapter):
    """Writes to the chunk's file and to Prefect's run logger."""

    def __init__(self, file_log: logging.Logger, run_log: logging.LoggerAdapter) -> None:
        super().__init__(file_log, {})
        self.run_log = run_log

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        self.logger.log(level, msg, *args)
        self.run_log.log(level, msg, *args)


@task(
    name="install-chunk",
    task_run_name="{label}",
    # no tags: a tagged task run asks the API for tag concurrency slots before it starts
    # (one more round trip, on a fresh client, per chunk)
    cache_policy=NO_CACHE,
    retries=0,
)
def install_chunk(
    label: str,
    index: int,
    instances: list[Instance],
    cfg: HostInstallConfig,
    max_workers: int,
    log_dir: str,
    extra_sample_fraction: float = 0.1,
    seed: int | None = None,
) -> ChunkResult:
    run_log = get_run_logger()
    # paramiko logs tracebacks for connections it gives up on; each host's result already
    # carries the reason, so keep its transport chatter out of the run log
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    cfg = with_key(cfg)  # read here, in the worker: the key is never a task argument
    file_log, path, handler = chunk_log(log_dir, index)
    log = _Both(file_log, run_log)  # type: ignore[arg-type]
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
    host_lines = HostLines(label, lambda level, line: run_log.log(level, "%s", line))

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
    )
