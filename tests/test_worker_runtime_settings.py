"""What the runtime tests and benchmarks rely on in the rendered worker container (mocks, fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BASE_CONFIG, Run, name_values, run_program

from components.agent_service import (
    FLOW_RUN_RSS_MIB,
    HAND_BACK_SECONDS,
    SUPERVISOR_PATH,
    USABLE_MEMORY,
    WORKER_RSS_MIB,
    run_limit,
)
from devtools.harness import image_files


def _limit(command: list[str]) -> int | None:
    return int(command[command.index("--limit") + 1]) if "--limit" in command else None


@pytest.mark.parametrize(("cpu", "memory", "limit"), [("512", "1024", 4), ("1024", "2048", 10), ("256", "512", 1)])
def test_process_worker_limit_follows_task_memory(cpu: str, memory: str, limit: int) -> None:
    container = run_program({**BASE_CONFIG, "cpu": cpu, "memory": memory}).container()
    assert _limit(container["command"]) == limit


@pytest.mark.parametrize("memory", [512, 1024, 2048, 4096, 8192, 30720])
def test_runs_at_the_limit_fit_in_the_usable_memory(memory: int) -> None:
    limit = run_limit(memory)
    assert limit >= 1
    if memory >= 1024:  # 512 MiB gets one run however tight: a worker that runs nothing is useless
        assert WORKER_RSS_MIB + limit * FLOW_RUN_RSS_MIB <= memory * USABLE_MEMORY


def test_flow_runs_beat_often_enough_for_the_controller(default_run: Run) -> None:
    """Five beats fit in the controller's silence, so a live run is never judged dead for one late beat."""
    env = name_values(default_run.container()["environment"])
    controller = default_run.one("aws:lambda/function:Function", "controller").plain_inputs
    silence = int(controller["environment"]["variables"]["SILENCE_SECONDS"])
    assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) * 5 <= silence


def test_the_supervisor_the_command_runs_is_in_the_image_and_told_the_container_deadline(default_run: Run) -> None:
    container = default_run.container()
    command = container["command"]
    in_image = image_files()  # the Dockerfile's COPY lines: what the harness runs in its place
    assert command[:2] == ["python", SUPERVISOR_PATH] and SUPERVISOR_PATH in in_image
    assert Path(in_image[SUPERVISOR_PATH]).is_file()
    assert command[command.index("--stop-timeout") + 1] == str(container["stopTimeout"])
    assert 0 < HAND_BACK_SECONDS < container["stopTimeout"] <= 120  # Fargate's maximum
