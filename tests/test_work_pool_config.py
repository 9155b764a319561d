"""The work pool keys: workPoolType, workPoolConcurrency, flowRunCpu/flowRunMemory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import API_KEY, BASE_CONFIG, PROJECT, ROOT, load_stack_config

from components.config import ConfigError, TaskSize


def _error(config: dict[str, str], key: str) -> str:
    """The error line naming `key`."""
    with pytest.raises(ConfigError) as raised:
        load_stack_config(config)
    message = str(raised.value)
    assert API_KEY not in message
    return next(line for line in message.splitlines() if f"{PROJECT}:{key}:" in line)


def test_defaults_are_a_process_pool_without_limit() -> None:
    loaded = load_stack_config(BASE_CONFIG)
    assert loaded.work_pool_type == "process"
    assert loaded.work_pool_concurrency is None
    assert loaded.flow_run_size == TaskSize(cpu=1024, memory=2048)


def test_ecs_pool_with_limit_and_size() -> None:
    loaded = load_stack_config(
        {
            **BASE_CONFIG,
            "workPoolType": "ecs",
            "workPoolConcurrency": "25",
            "flowRunCpu": "2048",
            "flowRunMemory": "8192",
        }
    )
    assert (loaded.work_pool_type, loaded.work_pool_concurrency) == ("ecs", 25)
    assert loaded.flow_run_size == TaskSize(cpu=2048, memory=8192)


INVALID = [
    ("type", {"workPoolType": "kubernetes"}, "workPoolType", "not valid"),
    ("limit-word", {"workPoolConcurrency": "many"}, "workPoolConcurrency", "not a whole number"),
    ("limit-zero", {"workPoolConcurrency": "0"}, "workPoolConcurrency", "no flow run"),
    ("flow-cpu", {"workPoolType": "ecs", "flowRunCpu": "1000"}, "flowRunCpu", "not a Fargate cpu size"),
    ("flow-memory", {"workPoolType": "ecs", "flowRunCpu": "256", "flowRunMemory": "4096"}, "flowRunMemory",
     "does not go with flowRunCpu 256"),
    ("dot-in-ecs-pool", {"workPoolType": "ecs", "workPool": "team.pool"}, "workPool", "ECS refuses"),
    ("size-for-process", {"flowRunCpu": "2048", "flowRunMemory": "4096"}, "flowRunCpu", "workPoolType is 'process'"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "key", "problem"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_values_name_the_key_and_the_fix(extra: dict[str, str], key: str, problem: str) -> None:
    line = _error({**BASE_CONFIG, **extra}, key)
    assert problem in line
    assert "Allowed:" in line
    assert "pulumi config set" in line or "pulumi config rm" in line


def test_pulumi_yaml_declares_the_keys_with_the_programs_defaults() -> None:
    declared = yaml.safe_load(Path(ROOT / "Pulumi.yaml").read_text())["config"]
    assert declared["workPoolType"]["default"] == "process"
    assert declared["workPoolConcurrency"]["default"] == ""
    assert declared["flowRunCpu"]["default"] == 1024
    assert declared["flowRunMemory"]["default"] == 2048
    for key in ("workPoolType", "workPoolConcurrency", "flowRunCpu", "flowRunMemory"):
        assert declared[key]["description"]
