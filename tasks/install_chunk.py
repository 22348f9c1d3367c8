"""The chunk task: what Prefect sees of one chunk (a task run with its logs and result).

The work (`tasks.install_work.run_chunk`: a thread per host) runs in a forked worker under
the `process` runner (`tasks.forked_runner`), or in the task run's own thread or Dask
worker under the others; its lines reach this task run's log either way. Arguments and
result are plain data; the SSH key is not among them (the work reads it where it runs).
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from .forked_runner import in_worker
from .install_work import run_chunk
from .models import ChunkResult, Instance
from .remote.config import HostInstallConfig


@task(
    name="install-chunk",
    task_run_name="{label}",
    # no tags: a tagged task run asks the API for tag concurrency slots before it starts
    # (one more round trip per chunk)
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
    attach_key: str = "",
) -> ChunkResult:
    """One chunk's hosts: the work's lines in this task run's log, its result as this
    task run's. `attach_key`: the work already sent to the workers under this key (the
    install began before this task run existed; see tasks/install_start.py)."""
    run_log = get_run_logger()
    kwargs = {
        "label": label,
        "index": index,
        "instances": instances,
        "cfg": cfg,
        "max_workers": max_workers,
        "log_dir": log_dir,
        "extra_sample_fraction": extra_sample_fraction,
        "seed": seed,
    }
    emit = lambda level, text: run_log.log(level, "%s", text)  # noqa: E731
    return in_worker(run_chunk, kwargs, emit, key=attach_key)
