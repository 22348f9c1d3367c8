"""The chunk task's per-host run-log lines: failures at once, installed hosts batched."""

from __future__ import annotations

import logging

from tasks.install_work import HostLines


def test_failures_go_at_once_installed_hosts_in_batches() -> None:
    now = [0.0]
    sent: list[tuple[int, str]] = []
    lines = HostLines(
        "chunk-000",
        lambda lvl, msg: sent.append((lvl, msg)),
        every_s=1.0,
        max_lines=3,
        clock=lambda: now[0],
    )
    lines.add(logging.INFO, "i-1 ok")
    lines.add(logging.WARNING, "i-2 failed reason: x")
    assert sent == [(logging.WARNING, "i-2 failed reason: x")]  # not held back
    lines.add(logging.INFO, "i-3 ok")
    lines.add(logging.INFO, "i-4 ok")  # the third installed host fills the batch
    assert sent[-1] == (logging.INFO, "chunk-000: 3 hosts: i-1 ok; i-3 ok; i-4 ok")
    lines.add(logging.INFO, "i-5 ok")
    now[0] = 1.5
    lines.add(logging.INFO, "i-6 ok")  # a second passed: sent though the batch is not full
    assert sent[-1] == (logging.INFO, "chunk-000: 2 hosts: i-5 ok; i-6 ok")
    lines.add(logging.INFO, "i-7 ok")
    lines.flush()
    lines.flush()  # nothing left: nothing sent
    assert sent[-1] == (logging.INFO, "i-7 ok") and len(sent) == 4
    every = " ".join(msg for _, msg in sent)
    assert all(f"i-{n} " in every for n in range(1, 8))  # every host is in the run log
