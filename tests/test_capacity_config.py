"""workerCapacity and flowRunCapacity: Fargate on demand by default, Fargate Spot when chosen."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import API_KEY, BASE_CONFIG, PROJECT, ROOT, RecordingMocks, load_stack_config, run_program

from components.config import CAPACITIES, ConfigError


def test_on_demand_is_the_default() -> None:
    loaded = load_stack_config(BASE_CONFIG)
    assert (loaded.worker_capacity, loaded.flow_run_capacity) == ("FARGATE", "FARGATE")


def test_spot_for_the_worker_and_an_ecs_pools_flow_runs() -> None:
    config = {**BASE_CONFIG, "workPoolType": "ecs", "workerCapacity": "FARGATE_SPOT", "flowRunCapacity": "FARGATE_SPOT"}
    loaded = load_stack_config(config)
    assert (loaded.worker_capacity, loaded.flow_run_capacity) == ("FARGATE_SPOT", "FARGATE_SPOT")


@pytest.mark.parametrize("architecture", ["X86_64", "ARM64"])
def test_spot_runs_either_architecture(architecture: str) -> None:
    """ "FARGATE_SPOT supports Linux tasks with the ARM64 architecture on platform version 1.4.0 or later" (ECS API
    reference, CapacityProviderStrategyItem): ARM64 on Spot is the cheapest worker (test_ecs_pool checks the
    service's and RunTask's platform version)."""
    config = {**BASE_CONFIG, "workPoolType": "ecs", "workerCapacity": "FARGATE_SPOT", "flowRunCapacity": "FARGATE_SPOT"}
    loaded = load_stack_config({**config, "cpuArchitecture": architecture})
    assert (loaded.cpu_architecture, loaded.worker_capacity, loaded.flow_run_capacity) == (
        architecture,
        "FARGATE_SPOT",
        "FARGATE_SPOT",
    )


INVALID = [
    ("worker-lowercase", {"workerCapacity": "spot"}, "workerCapacity", "'spot' is not valid"),
    ("flow-run-ec2", {"workPoolType": "ecs", "flowRunCapacity": "EC2"}, "flowRunCapacity", "'EC2' is not valid"),
    ("flow-run-spot-for-process", {"flowRunCapacity": "FARGATE_SPOT"}, "flowRunCapacity", "workPoolType is 'process'"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "key", "problem"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_bad_capacity_fails_before_any_resource_with_the_fix(extra: dict[str, str], key: str, problem: str) -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program({**BASE_CONFIG, **extra}, mocks=mocks)
    message = str(raised.value)
    line = next(line for line in message.splitlines() if f"{PROJECT}:{key}:" in line)
    assert problem in line
    assert "Allowed:" in line
    assert f"pulumi config set {PROJECT}:" in line
    assert API_KEY not in message
    assert mocks.resources == []


def test_pulumi_yaml_declares_the_keys_with_the_programs_defaults() -> None:
    declared = yaml.safe_load(Path(ROOT / "Pulumi.yaml").read_text())["config"]
    loaded = load_stack_config(BASE_CONFIG)
    assert declared["workerCapacity"]["default"] == loaded.worker_capacity
    assert declared["flowRunCapacity"]["default"] == loaded.flow_run_capacity
    for key in ("workerCapacity", "flowRunCapacity"):
        assert all(capacity in declared[key]["description"] for capacity in CAPACITIES)
