"""Which `pulumi up` changes restart the worker: the AgentService's ECS service through the AWS provider.

Mocks see only the inputs a program registers, not what the provider sends AWS for a change of them.
pulumi-aws bridges terraform-provider-aws's `aws_ecs_service` (internal/service/ecs/service.go): its
`resourceServiceUpdate` sends `ForceNewDeployment: d.Get("force_new_deployment")` with every update,
and its `capacityProviderStrategyCustomizeDiff` decides when a strategy change replaces the service.

The fast tests compare the service's inputs between two configs. The slow one runs that same resource
code: terraform with terraform-provider-aws 5.100.0 (the last 5.x; both functions read the same in the
6.x line pulumi-aws 7 is built from), against moto_server on 127.0.0.1 with moto's request recorder,
fed the service arguments that AgentService registers under mocks (devtools/terraform.py runs it; the
whole program goes through the same provider in devtools/rehearse.py). It needs terraform and the provider
in a local filesystem mirror (TF_PROVIDER_MIRROR, default /opt/tf-plugins) and skips, saying which is
missing, without them.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Run, run_pulumi
from test_agent_service import service_args

from components.agent_service import AgentService
from devtools import terraform
from devtools.harness import free_port, start_moto

SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
# How the service places its tasks, and what a task definition is made of: a change here needs new tasks.
PLACEMENT_KEYS = {"launchType", "capacityProviderStrategies"}


def service_run(**overrides: object) -> Run:
    return run_pulumi(lambda: AgentService("svc", service_args(**overrides)))


def changed_inputs(before: Run, after: Run, typ: str) -> set[str]:
    old, new = before.one(typ).plain_inputs, after.one(typ).plain_inputs
    return {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


@pytest.fixture(scope="module")
def base_run() -> Run:
    return service_run(desired_count=1)


def test_service_never_forces_a_new_deployment(base_run: Run) -> None:
    """With force_new_deployment the provider would send ForceNewDeployment on every update of the
    service (resourceServiceUpdate), replacing every running worker for a desiredCount change."""
    assert not base_run.one(SERVICE).plain_inputs.get("forceNewDeployment")


@pytest.mark.parametrize(
    ("overrides", "changed"),
    [
        ({"desired_count": 2}, {"desiredCount"}),
        ({"subnet_ids": ["subnet-0aaaaaaaaaaaaaaa2"]}, {"networkConfiguration"}),
        ({"security_group_ids": ["sg-0aaaaaaaaaaaaaaa2"]}, {"networkConfiguration"}),
    ],
    ids=["desiredCount", "subnets", "security-groups"],
)
def test_scaling_or_network_change_touches_only_its_own_input(
    base_run: Run, overrides: dict[str, Any], changed: set[str]
) -> None:
    """Nothing else moves: the same task definition (no new revision to roll out) and placement, so the
    provider's update carries only this field and no forced deployment."""
    after = service_run(**{"desired_count": 1, **overrides})
    assert changed_inputs(base_run, after, SERVICE) == changed
    assert changed_inputs(base_run, after, TASK) == set()


def test_capacity_change_changes_the_placement(base_run: Run) -> None:
    """workerCapacity FARGATE -> FARGATE_SPOT: the launch type gives way to a strategy, which the provider
    plans as a replacement of the service (capacityProviderStrategyCustomizeDiff): new tasks on Spot."""
    spot = service_run(desired_count=1, capacity="FARGATE_SPOT", cpu_architecture="X86_64")
    assert changed_inputs(base_run, spot, SERVICE) == PLACEMENT_KEYS
    assert spot.one(SERVICE).plain_inputs["capacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE_SPOT", "weight": 1}
    ]


# --- the provider's own code path, through terraform against moto --------------------------------

needs_terraform = pytest.mark.skipif(terraform.missing() is not None, reason=str(terraform.missing()))


# The test's subnet ids (test_agent_service.service_args), as moto's two subnets.
MOTO_SUBNET = {"subnet-0aaaaaaaaaaaaaaa1": 0, "subnet-0aaaaaaaaaaaaaaa2": 1}


def terraform_service(run: Run) -> dict[str, Any]:
    """The `aws_ecs_service` arguments that AgentService's registered inputs stand for (the bridge maps
    camelCase inputs onto the provider's snake_case schema); network and cluster are moto's."""
    inputs = run.one(SERVICE).plain_inputs
    service: dict[str, Any] = {
        "name": "worker",
        "cluster": "${aws_ecs_cluster.c.arn}",
        "task_definition": "${aws_ecs_task_definition.t.arn}",
        "desired_count": inputs["desiredCount"],
        "force_new_deployment": bool(inputs.get("forceNewDeployment")),
        "network_configuration": {
            "subnets": [f"${{aws_subnet.n[{MOTO_SUBNET[inputs['networkConfiguration']['subnets'][0]]}].id}}"],
            "security_groups": ["${aws_security_group.g.id}"],
        },
    }
    if "launchType" in inputs:
        service["launch_type"] = inputs["launchType"]
    if strategies := inputs.get("capacityProviderStrategies"):
        service["capacity_provider_strategy"] = [
            {"capacity_provider": s["capacityProvider"], "weight": s["weight"]} for s in strategies
        ]
    return service


def terraform_config(endpoint: str, service: dict[str, Any]) -> dict[str, Any]:
    return {
        "terraform": {"required_providers": terraform.required_providers()},
        "provider": {"aws": terraform.moto_provider(endpoint)},
        "resource": {
            "aws_vpc": {"v": {"cidr_block": "10.0.0.0/16"}},
            "aws_subnet": {"n": {"count": 2, "vpc_id": "${aws_vpc.v.id}", "cidr_block": "10.0.${count.index}.0/24"}},
            "aws_security_group": {"g": {"vpc_id": "${aws_vpc.v.id}"}},
            "aws_ecs_cluster": {"c": {"name": "workers"}},
            "aws_ecs_task_definition": {
                "t": {
                    "family": "worker",
                    "requires_compatibilities": ["FARGATE"],
                    "network_mode": "awsvpc",
                    "cpu": "256",
                    "memory": "512",
                    "container_definitions": json.dumps([{"name": "w", "image": "busybox", "essential": True}]),
                }
            },
            "aws_ecs_service": {"s": service},
        },
    }


class ServiceRollout:
    """terraform (devtools/terraform.py) in a work dir against one moto_server; `apply` returns the ECS
    service calls it made, from moto's request recorder."""

    def __init__(self, workdir: Path, endpoint: str) -> None:
        self.terraform, self.endpoint = terraform.Terraform(workdir), endpoint

    def apply(self, service: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        self.terraform.write(terraform_config(self.endpoint, service))
        self.terraform.init()
        recorder = f"{self.endpoint}/moto-api/recorder"
        httpx.post(f"{recorder}/reset-recording").raise_for_status()
        httpx.post(f"{recorder}/start-recording").raise_for_status()
        self.terraform.run("apply", "-auto-approve", "-input=false", "-no-color", timeout=300)
        httpx.post(f"{recorder}/stop-recording").raise_for_status()
        calls = []
        for line in httpx.get(f"{recorder}/download-recording").text.splitlines():
            entry = json.loads(line) if line.strip() else {}
            operation = entry.get("headers", {}).get("X-Amz-Target", "").rpartition(".")[2]
            if operation.endswith("Service"):
                calls.append((operation, json.loads(base64.b64decode(entry["body"]))))
        return calls


@pytest.fixture
def rollout(tmp_path: Path) -> Iterator[ServiceRollout]:
    port = free_port()
    moto = start_moto(port, {"PATH": os.environ["PATH"]}, tmp_path)
    try:
        yield ServiceRollout(tmp_path / "terraform", f"http://127.0.0.1:{port}")
    finally:
        moto.stop()


def updates(calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    assert {operation for operation, _ in calls} <= {"UpdateService"}, calls  # in place: no new service
    return [body for _, body in calls]


@pytest.mark.slow
@pytest.mark.long
@needs_terraform
def test_provider_rolls_only_for_a_new_capacity(rollout: ServiceRollout) -> None:
    """The real provider, fed what AgentService registers: a desiredCount or subnet change is an
    UpdateService without ForceNewDeployment (ECS rolls nothing for a desired count), and workerCapacity
    FARGATE -> FARGATE_SPOT is a new service on Spot in place of the old one."""
    created = rollout.apply(terraform_service(service_run(desired_count=1)))
    assert [operation for operation, _ in created] == ["CreateService"]

    (scaled,) = updates(rollout.apply(terraform_service(service_run(desired_count=2))))
    assert scaled["desiredCount"] == 2
    assert not scaled.get("forceNewDeployment")
    assert "taskDefinition" not in scaled and "capacityProviderStrategy" not in scaled

    moved = ["subnet-0aaaaaaaaaaaaaaa2"]  # moto's other subnet
    (renetworked,) = updates(rollout.apply(terraform_service(service_run(desired_count=2, subnet_ids=moved))))
    assert "networkConfiguration" in renetworked and not renetworked.get("forceNewDeployment")

    spot = service_run(desired_count=2, subnet_ids=moved, capacity="FARGATE_SPOT", cpu_architecture="X86_64")
    calls = rollout.apply(terraform_service(spot))
    operations = [operation for operation, _ in calls]
    # Replaced, not updated. terraform deletes first; Pulumi creates the new service first (its default).
    assert "CreateService" in operations and "DeleteService" in operations
    (create,) = [body for operation, body in calls if operation == "CreateService"]
    assert create["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    assert create["desiredCount"] == 2
