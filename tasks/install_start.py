"""What the install does before and up to its first SSH connection, without Prefect.

`begin(...)` checks what needs the network (the key can be read, the caller's identity,
every host running at the address given), opens ingress once per security group, waits
for the host keys under the strict policy, and, for the `process` runner, sends every
chunk to the forked workers at once (`tasks.forked_workers`, each call under a key the
chunk's task run attaches to). The install flow calls it; the CLI calls it earlier, right
after checking its inputs and before importing Prefect, so that connecting to the hosts
overlaps Prefect's start and the flow run's creation: the flow's own call then finds the
same request already begun and takes it over (`taken`), logging what was done.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blocks.settings import FleetSettings
from tasks.models import Instance
from tasks.planning import PlanError, PoolPlan, chunked
from tasks.remote.config import HostInstallConfig, remote_config
from tasks.remote.key_source import KeyUnavailable, read_key

_BEGUN: dict[str, Begun] = {}
_LOCK = threading.Lock()


def chunk_label(index: int, total: int, chunk: list[Instance]) -> str:
    """`chunk 2 of 3 (12 hosts: i-a..i-b)`, `chunk 1 of 1 (1 host: i-a)`."""
    first, last = chunk[0].instance_id, chunk[-1].instance_id
    hosts = f"1 host: {first}" if len(chunk) == 1 else f"{len(chunk)} hosts: {first}..{last}"
    return f"chunk {index + 1} of {total} ({hosts})"


@dataclass
class Checked:
    """What the checks found and did: lines for the flow run's log, the host keys read
    (strict policy), the AWS calls made and throttling retries taken."""

    lines: list[str]
    expected: dict[str, list[str]]
    api_calls: int
    throttle_retries: int


@dataclass
class Begun:
    """An install begun: its chunks, their labels and attach keys, the config they run
    with (once the checks are done), and what was done so far."""

    key: str
    chunks: list[list[Instance]]
    labels: list[str]
    log_dir: str
    max_workers: int
    dispatched: bool
    cfg: HostInstallConfig | None = None
    lines: list[str] = field(default_factory=list)
    api_calls: int = 0
    throttle_retries: int = 0
    began_at: float = field(default_factory=time.time)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def attach_key(self, index: int) -> str:
        return f"{self.key}/{index}" if self.dispatched else ""

    def wait(self) -> Begun:
        """Once the checks are done (and the chunks sent); their error, if they failed."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self


def request_key(
    settings: FleetSettings, instances: list[Instance], plan: PoolPlan, dispatch: bool
) -> str:
    """The same request gets the same key (deployment, hosts, shape, host-key policy, and
    whether the chunks go to forked workers)."""
    text = json.dumps(
        [
            dispatch,
            settings.deployment_name,
            settings.host_key_policy,
            [(i.instance_id, i.public_ip) for i in instances],
            [plan.chunk_size, plan.max_workers, plan.desired_count],
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_key(settings: FleetSettings) -> str:
    """The private key PEM, from a Prefect Secret block or a file. Never logged; the chunks
    read it again where they run."""
    from tasks.errors import StageError

    try:
        return read_key(settings.ssh_key_block, str(settings.key_file_path()))
    except KeyUnavailable as exc:
        raise StageError(str(exc)) from None


def begin(
    settings: FleetSettings,
    instances: list[Instance],
    plan: PoolPlan,
    *,
    dispatch: bool,
) -> Begun:
    """The install of `instances` begun (see the module docstring): the one this process
    began already for the same request, else begun now; returns once its checks are done
    (raising their error). `dispatch`: send the chunks to the forked workers."""
    key = request_key(settings, instances, plan, dispatch)
    with _LOCK:
        early = _BEGUN.pop(key, None)
    if early is not None:
        early.wait()
        early.lines.append(
            f"install begun {time.time() - early.began_at:.1f}s ago, before this flow run"
        )
        return early
    begun = _new(key, settings, instances, plan, dispatch)
    _run(begun, settings, instances, plan)
    return begun.wait()


def begin_early(
    settings: FleetSettings, instances: list[Instance], plan: PoolPlan, *, dispatch: bool
) -> None:
    """`begin`, in a thread of its own, for the flow run this process starts next to take
    over (an error of its checks is raised there)."""
    key = request_key(settings, instances, plan, dispatch)
    begun = _new(key, settings, instances, plan, dispatch)
    with _LOCK:
        _BEGUN[key] = begun
    threading.Thread(
        target=_run, args=(begun, settings, instances, plan), name="install-begin", daemon=True
    ).start()


def _new(
    key: str, settings: FleetSettings, instances: list[Instance], plan: PoolPlan, dispatch: bool
) -> Begun:
    chunks = chunked(instances, plan.chunk_size)
    return Begun(
        key=key,
        chunks=chunks,
        labels=[chunk_label(i, len(chunks), c) for i, c in enumerate(chunks)],
        log_dir=str(Path(settings.log_dir) / f"install-{int(time.time())}-{os.getpid()}"),
        max_workers=plan.max_workers,
        dispatched=dispatch,
    )


def _run(begun: Begun, settings: FleetSettings, instances: list[Instance], plan: PoolPlan) -> None:
    """The checks (in a worker that exits after them when this process has not loaded
    boto3 and needs no credentials block: the EC2 model they load is 24 MB), then the
    chunks to the workers."""
    from tasks.forked_workers import run_once

    try:
        load_key(settings)  # fail before any host when the key cannot be read
        # a credentials block is read through Prefect's API, which the worker lacks
        in_worker = not settings.aws_credentials_block and "botocore" not in sys.modules
        if begun.dispatched and in_worker:
            checked: Checked = run_once(
                install_checks, {"settings": settings, "instances": instances}
            )
        else:
            checked = install_checks(settings, instances)
        # where the key is, not the key: each chunk reads it where it runs
        begun.cfg = remote_config(settings, None, expected_fingerprints=checked.expected)
        begun.lines += checked.lines
        begun.api_calls, begun.throttle_retries = checked.api_calls, checked.throttle_retries
        if begun.dispatched:
            _dispatch(begun, plan.desired_count)
    except BaseException as exc:
        begun.error = exc
    finally:
        begun.done.set()


def install_checks(settings: FleetSettings, instances: list[Instance], emit: Any = None) -> Checked:
    """Identity, every host running at the address given, ingress once per group, host
    keys under the strict policy: PlanError naming what is wrong before anything changes."""
    from tasks.aws import Aws
    from tasks.aws.ec2 import authorize_ingress, controller_cidr, preflight
    from tasks.deploy.found import not_running

    aws = Aws(settings)
    preflight(aws)
    bad = not_running(aws, instances)  # before any ingress rule or SSH session
    if bad:
        raise PlanError(
            "instances",
            f"{len(bad)} of {len(instances)} instances are not running at the address given: "
            f"{', '.join(bad[:3])}",
        )
    lines: list[str] = []
    groups = sorted({g for i in instances for g in i.security_groups})
    if groups:
        cidr = controller_cidr(settings)
        added = authorize_ingress(aws, groups, settings.ingress_ports, lambda port: cidr)
        lines.append(f"ingress {settings.ingress_ports} from {cidr}: rules added per group {added}")
    expected: dict[str, list[str]] = {}
    if settings.host_key_policy == "strict":
        expected = host_key_fingerprints(aws, [i.instance_id for i in instances], settings)
        lines.append(f"host keys read from the console of {len(expected)} instances")
    return Checked(lines, expected, aws.api_calls, aws.stats.retries)


def chunk_kwargs(begun: Begun, index: int) -> dict[str, Any]:
    """The arguments of chunk `index`'s work (`tasks.install_work.run_chunk`)."""
    return {
        "label": begun.labels[index],
        "index": index,
        "instances": begun.chunks[index],
        "cfg": begun.cfg,
        "max_workers": begun.max_workers,
        "log_dir": begun.log_dir,
    }


def _dispatch(begun: Begun, workers: int) -> None:
    from tasks.forked_workers import WorkerPool, adopt, offer
    from tasks.install_work import run_chunk

    pool = adopt(workers) or WorkerPool(workers).start(background=True)
    for index in range(len(begun.chunks)):
        pool.submit(run_chunk, chunk_kwargs(begun, index), key=begun.attach_key(index))
    offer(pool)  # the flow's runner takes it, and with it the calls under way


def host_key_fingerprints(
    aws: Any, ids: list[str], settings: FleetSettings
) -> dict[str, list[str]]:
    """strict policy: wait until every instance's console shows its host keys (the hosts
    still missing when the wait ends are judged by the install: they fail)."""
    import contextlib

    from tasks.aws.ec2 import console_fingerprints
    from tasks.waiting import WaitTimeout, wait_until

    found: dict[str, list[str]] = {}

    def all_found() -> bool:
        found.update(console_fingerprints(aws, [i for i in ids if not found.get(i)]))
        return all(found.get(i) for i in ids)

    with contextlib.suppress(WaitTimeout):
        wait_until(
            "host keys in the console output", all_found, timeout_s=settings.ssh_wait_s, poll_s=2.0
        )
    return found
