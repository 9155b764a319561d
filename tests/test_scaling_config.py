"""minWorkers/maxWorkers/lateRunMinutes/scaleLeadMinutes: today's fixed worker by default, refusals with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import API_KEY, BASE_CONFIG, PROJECT, ROOT, RecordingMocks, load_stack_config, run_program

from components.config import ConfigError, WorkerScaling


def test_default_is_one_worker_always_on_without_scaling() -> None:
    loaded = load_stack_config(BASE_CONFIG)
    assert loaded.scaling is None
    assert (loaded.desired_count, loaded.always_on_workers) == (1, 1)
    assert (loaded.late_run_minutes, loaded.scale_lead_minutes) == (15, 3)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"minWorkers": "0"}, WorkerScaling(min_workers=0, max_workers=1)),
        ({"maxWorkers": "3"}, WorkerScaling(min_workers=1, max_workers=3)),
        ({"minWorkers": "0", "maxWorkers": "4"}, WorkerScaling(min_workers=0, max_workers=4)),
        # 1 GB task: --limit 4 (agent_service.run_limit); concurrency 8 fills 2 workers.
        (
            {"minWorkers": "0", "maxWorkers": "2", "workPoolConcurrency": "8"},
            WorkerScaling(min_workers=0, max_workers=2),
        ),
        ({"minWorkers": "0", "workPoolType": "ecs"}, WorkerScaling(min_workers=0, max_workers=1)),
    ],
)
def test_scaling_is_read_with_its_defaults(extra: dict[str, str], expected: WorkerScaling) -> None:
    loaded = load_stack_config({**BASE_CONFIG, **extra})
    assert loaded.scaling == expected
    assert loaded.always_on_workers == expected.min_workers


INVALID = [
    ("min-above-max", {"minWorkers": "3", "maxWorkers": "2"}, "minWorkers", "above maxWorkers 2",
     f"pulumi config set {PROJECT}:minWorkers 2"),
    ("negative", {"minWorkers": "-1"}, "minWorkers", "out of range", f"pulumi config set {PROJECT}:minWorkers"),
    ("max-zero", {"minWorkers": "0", "maxWorkers": "0"}, "maxWorkers", "no flow run would ever start",
     f"pulumi config set {PROJECT}:maxWorkers 1"),
    ("not-a-number", {"maxWorkers": "many"}, "maxWorkers", "not a whole number",
     f"pulumi config set {PROJECT}:maxWorkers"),
    ("above-concurrency", {"maxWorkers": "3", "workPoolConcurrency": "8"}, "maxWorkers",
     "workPoolConcurrency 8 fills 2 worker(s)", f"pulumi config set {PROJECT}:maxWorkers 2"),
    ("ecs-two", {"maxWorkers": "2", "workPoolType": "ecs"}, "maxWorkers", "a second worker adds nothing",
     f"pulumi config set {PROJECT}:maxWorkers 1"),
    ("with-desired-count", {"maxWorkers": "2", "desiredCount": "3"}, "desiredCount", "not both",
     f"pulumi config rm {PROJECT}:desiredCount"),
    ("late-zero", {"lateRunMinutes": "0"}, "lateRunMinutes", "out of range",
     f"pulumi config set {PROJECT}:lateRunMinutes 15"),
    ("lead-too-long", {"scaleLeadMinutes": "90"}, "scaleLeadMinutes", "out of range",
     f"pulumi config set {PROJECT}:scaleLeadMinutes 3"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "key", "problem", "fix"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_bad_scaling_fails_before_any_resource_with_the_fix(
    extra: dict[str, str], key: str, problem: str, fix: str
) -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program({**BASE_CONFIG, **extra}, mocks=mocks)
    message = str(raised.value)
    line = next(line for line in message.splitlines() if f"{PROJECT}:{key}:" in line)
    assert problem in line
    assert "Allowed:" in line
    assert fix in line
    assert API_KEY not in message
    assert mocks.resources == []


def test_pulumi_yaml_declares_the_keys_with_the_programs_defaults() -> None:
    declared = yaml.safe_load(Path(ROOT / "Pulumi.yaml").read_text())["config"]
    loaded = load_stack_config(BASE_CONFIG)
    assert declared["minWorkers"]["default"] == declared["maxWorkers"]["default"] == ""  # unset: no scaling
    assert declared["lateRunMinutes"]["default"] == loaded.late_run_minutes
    assert declared["scaleLeadMinutes"]["default"] == loaded.scale_lead_minutes
    keys = ("minWorkers", "maxWorkers", "lateRunMinutes", "desiredCount")
    as_cli_sends = {k: str(declared[k]["default"]) for k in keys}
    assert load_stack_config({**as_cli_sends, **BASE_CONFIG}).scaling is None
