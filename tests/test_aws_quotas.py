"""devtools/aws_quotas.py: AWS limits neither moto nor the provider enforces, checked on what the program
registers (fast). Each quota is shown to pass at its limit and fail one past it, on resources built here."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import RecordingMocks, Resource, Run

from devtools.aws_quotas import Finding, api_max, check, quotas


def resource(typ: str, inputs: dict[str, Any], name: str = "r") -> Resource:
    return Resource(typ, name, f"{name}-id", inputs, {**inputs, "name": name})


def run_of(*resources: Resource) -> Run:
    mocks = RecordingMocks()
    mocks.resources.extend(resources)
    return Run(mocks=mocks)


def policy(statements: int = 1, actions: int = 1, padding: int = 0) -> str:
    statement = {"Effect": "Allow", "Action": [f"sqs:A{i}" for i in range(actions)], "Resource": "x" * padding}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement] * statements})


def iam_policy(characters: int) -> str:
    """A policy of exactly `characters` characters, white space not counted (as IAM counts)."""
    bare = json.dumps({"Statement": [{"Resource": ""}]}, separators=(",", ":"))
    return json.dumps({"Statement": [{"Resource": "a" * (characters - len(bare))}]}, indent=2)


# quota -> (resources at exactly `n`), for each quota of devtools.aws_quotas
BUILDERS: dict[str, Callable[[int], list[Resource]]] = {
    "step adjustments per step scaling policy": lambda n: [
        resource("aws:appautoscaling/policy:Policy", {"stepScalingPolicyConfiguration": {"stepAdjustments": [{}] * n}})
    ],
    "bytes of environment variables, in aggregate": lambda n: [
        resource("aws:lambda/function:Function", {"environment": {"variables": {"K": "v" * (n - len('{"K":""}'))}}})
    ],
    "characters of description": lambda n: [
        resource("aws:lambda/function:Function", {"description": "d" * n}),
        resource("aws:cloudwatch/eventRule:EventRule", {"description": "d" * n}),
    ],
    "subnets in its VPC config": lambda n: [
        resource("aws:lambda/function:Function", {"vpcConfig": {"subnetIds": ["s"] * n, "securityGroupIds": []}})
    ],
    "security groups in its VPC config": lambda n: [
        resource("aws:lambda/function:Function", {"vpcConfig": {"subnetIds": [], "securityGroupIds": ["g"] * n}})
    ],
    "characters of trust policy (default quota)": lambda n: [
        resource("aws:iam/role:Role", {"assumeRolePolicy": iam_policy(n)})
    ],
    "characters of inline policies, in aggregate": lambda n: [
        resource("aws:iam/role:Role", {"assumeRolePolicy": iam_policy(100)}, name="role"),
        resource("aws:iam/rolePolicy:RolePolicy", {"role": "role", "policy": iam_policy(n - 1000)}, name="p1"),
        resource("aws:iam/rolePolicy:RolePolicy", {"role": "role-id", "policy": iam_policy(1000)}, name="p2"),
        resource("aws:iam/rolePolicy:RolePolicy", {"role": "other", "policy": iam_policy(5000)}, name="p3"),
    ],
    "characters of alarm description": lambda n: [
        resource("aws:cloudwatch/metricAlarm:MetricAlarm", {"alarmDescription": "d" * n})
    ],
    "characters of filter pattern": lambda n: [
        resource("aws:cloudwatch/logMetricFilter:LogMetricFilter", {"pattern": "p" * n})
    ],
    "characters of event pattern (default quota)": lambda n: [
        resource("aws:cloudwatch/eventRule:EventRule", {"eventPattern": "e" * n})
    ],
    "targets per rule": lambda n: [
        resource("aws:cloudwatch/eventRule:EventRule", {}, name="rule"),
        *(resource("aws:cloudwatch/eventTarget:EventTarget", {"rule": "rule"}, name=f"t{i}") for i in range(n)),
        resource("aws:cloudwatch/eventTarget:EventTarget", {"rule": "another"}, name="elsewhere"),
    ],
    "bytes of queue policy": lambda n: [
        resource("aws:sqs/queuePolicy:QueuePolicy", {"policy": policy(padding=n - len(policy()))})
    ],
    "statements in a queue policy": lambda n: [resource("aws:sqs/queuePolicy:QueuePolicy", {"policy": policy(n)})],
    "actions in one statement": lambda n: [resource("aws:sqs/queuePolicy:QueuePolicy", {"policy": policy(actions=n)})],
    "containers per task definition": lambda n: [
        resource("aws:ecs/taskDefinition:TaskDefinition", {"containerDefinitions": json.dumps([{}] * n)})
    ],
    "subnets in its awsvpc configuration": lambda n: [
        resource("aws:ecs/service:Service", {"networkConfiguration": {"subnets": ["s"] * n, "securityGroups": []}})
    ],
    "security groups in its awsvpc configuration": lambda n: [
        resource("aws:ecs/service:Service", {"networkConfiguration": {"subnets": [], "securityGroups": ["g"] * n}})
    ],
    "widgets per dashboard": lambda n: [
        resource("aws:cloudwatch/dashboard:Dashboard", {"dashboardBody": json.dumps({"widgets": [{}] * n})})
    ],
}


# The published numbers (each quota's `source`), so that a change to one is a change to this table too.
PUBLISHED = {
    "step adjustments per step scaling policy": [20],
    "bytes of environment variables, in aggregate": [4096],
    "characters of description": [256, 512],  # Lambda, EventBridge rule
    "subnets in its VPC config": [16],
    "security groups in its VPC config": [5],
    "characters of trust policy (default quota)": [2048],
    "characters of inline policies, in aggregate": [10240],
    "characters of alarm description": [1024],
    "characters of filter pattern": [1024],
    "characters of event pattern (default quota)": [2048],
    "targets per rule": [5],
    "bytes of queue policy": [8192],
    "statements in a queue policy": [20],
    "actions in one statement": [7],
    "containers per task definition": [10],
    "subnets in its awsvpc configuration": [16],
    "security groups in its awsvpc configuration": [5],
    "widgets per dashboard": [100],
}


def test_every_quota_has_a_builder_and_its_published_number() -> None:
    assert {q.what for q in quotas()} == set(BUILDERS)
    limits: dict[str, list[int]] = {}
    for q in quotas():
        limits.setdefault(q.what, []).append(q.limit)
    assert limits == PUBLISHED


@pytest.mark.parametrize("quota", quotas(), ids=lambda q: f"{q.typ.split(':')[1]}: {q.what}")
def test_each_quota_holds_at_its_limit_and_fails_one_past_it(quota: Any) -> None:
    def findings(n: int) -> list[Finding]:
        return [f for f in check(run_of(*BUILDERS[quota.what](n))) if f.quota == quota]

    (at_limit,) = findings(quota.limit)
    assert at_limit.value == quota.limit and not at_limit.violated
    (past,) = findings(quota.limit + 1)
    assert past.value == quota.limit + 1 and past.violated
    assert "OVER" in past.line() and quota.source in past.line()


def test_the_api_limits_are_read_from_botocores_models() -> None:
    assert api_max("cloudwatch", "PutMetricAlarm", "AlarmDescription") == 1024
    assert api_max("lambda", "CreateFunction", "Description") == 256
    assert api_max("lambda", "CreateFunction", "VpcConfig", "SubnetIds") == 16


def test_the_default_stack_is_measured_and_within_every_quota(default_run: Run) -> None:
    found = list(check(default_run))
    measured = {f.quota.what for f in found}
    assert {"characters of alarm description", "characters of inline policies, in aggregate"} <= measured
    assert [f.line() for f in found if f.violated] == []
