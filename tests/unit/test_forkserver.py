"""The fork server's preload list, shared by the early start and the pool (no process
is started here)."""

from __future__ import annotations

import pytest

from tasks.forkserver import BASE_PRELOAD, FREEZE_MODULE, INSTALL_PRELOAD, preload_list, start_early


def test_preload_list_is_prefect_then_ours_then_the_freeze() -> None:
    mods = preload_list(INSTALL_PRELOAD)
    assert mods[: len(BASE_PRELOAD)] == list(BASE_PRELOAD)
    assert mods[-1] == FREEZE_MODULE and "tasks.install_chunk" in mods
    assert FREEZE_MODULE not in preload_list(INSTALL_PRELOAD, freeze_gc=False)
    assert len(set(preload_list(["prefect", *INSTALL_PRELOAD]))) == len(mods)  # no repeats


def test_start_early_is_a_no_op_for_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOMCAT_FLEET_POOL_START_METHOD", "spawn")
    assert start_early() is False


def test_the_pool_runner_uses_the_same_list() -> None:
    from tasks.pool_runner import PreloadedProcessPoolTaskRunner

    runner = PreloadedProcessPoolTaskRunner(max_workers=1, preload=INSTALL_PRELOAD)
    assert runner._preload == tuple(preload_list(INSTALL_PRELOAD)[:-1])
