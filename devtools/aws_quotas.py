"""AWS quotas and API limits that a resource of the program could hit, checked on what it registers.

moto stores what it is given, and terraform-provider-aws checks only what its schema validators know, so a
deploy can pass both and still be refused by AWS: 26 step adjustments in one scaling policy, a Lambda
environment over 4 KB. Each check here is one published AWS limit, with where AWS publishes it; the
rehearsal (devtools/rehearse.py) runs them on every shape, and `check(run)` answers for any mocked run.

Sizes are measured on the mocked inputs. The mocks' ARNs and auto-names are close to real ones (a real
auto-name adds 8 characters), so a value within a few percent of its limit is worth a look anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from devtools.mocks import Resource, Run


@dataclass(frozen=True)
class Quota:
    """One published limit: what it bounds, the bound, and where AWS states it."""

    typ: str  # the Pulumi type token it applies to
    what: str
    limit: int
    source: str
    measure: Callable[[Resource, Run], int | None]  # None: does not apply to this resource


@dataclass(frozen=True)
class Finding:
    quota: Quota
    resource: Resource
    value: int

    @property
    def violated(self) -> bool:
        return self.value > self.quota.limit

    def line(self) -> str:
        verdict = "OVER" if self.violated else "ok"
        return (
            f"{verdict:4}  {self.quota.what}: {self.value} of {self.quota.limit} "
            f"({self.resource.typ} {self.resource.name}; {self.quota.source})"
        )


@cache
def api_max(service: str, operation: str, *path: str) -> int:
    """A request member's maximum length or count in botocore's service model (the API reference's constraint)."""
    import botocore.session

    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    for part in path:
        shape = shape.members[part]  # type: ignore[attr-defined]
    return int(shape.metadata["max"])


def _non_white(document: str) -> int:
    """IAM's policy size: characters, not counting white space (IAM and AWS STS quotas)."""
    return len(re.sub(r"\s", "", document))


def _length(key: str) -> Callable[[Resource, Run], int | None]:
    def measure(resource: Resource, _: Run) -> int | None:
        value = resource.plain_inputs.get(key)
        return None if value is None else len(value)

    return measure


def _step_adjustments(resource: Resource, _: Run) -> int | None:
    config = resource.plain_inputs.get("stepScalingPolicyConfiguration")
    return None if config is None else len(config.get("stepAdjustments") or [])


def _lambda_environment(resource: Resource, _: Run) -> int | None:
    """Lambda measures the variables as one JSON object ("String measured: {...}" in its refusal)."""
    variables = (resource.plain_inputs.get("environment") or {}).get("variables")
    return None if variables is None else len(json.dumps(variables, separators=(",", ":")).encode())


def _trust_policy(resource: Resource, _: Run) -> int | None:
    return _non_white(resource.plain_inputs["assumeRolePolicy"])


def _role_inline_policies(resource: Resource, run: Run) -> int | None:
    """Every inline policy of the role together: its RolePolicy resources (which name it by name or id)."""
    names = {resource.id, resource.outputs.get("name")}
    policies = (p.plain_inputs for p in run.of_type("aws:iam/rolePolicy:RolePolicy"))
    return sum(_non_white(policy["policy"]) for policy in policies if policy["role"] in names)


def _rule_targets(resource: Resource, run: Run) -> int | None:
    names = {resource.id, resource.outputs.get("name")}
    return sum(1 for t in run.of_type("aws:cloudwatch/eventTarget:EventTarget") if t.plain_inputs["rule"] in names)


def _statements(resource: Resource) -> list[dict[str, Any]]:
    statements = json.loads(resource.plain_inputs["policy"])["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _queue_policy_bytes(resource: Resource, _: Run) -> int | None:
    return len(resource.plain_inputs["policy"].encode())


def _queue_policy_statements(resource: Resource, _: Run) -> int | None:
    return len(_statements(resource))


def _queue_policy_actions(resource: Resource, _: Run) -> int | None:
    """The most actions one statement names."""
    actions = [s.get("Action", []) for s in _statements(resource)]
    return max(len(a) if isinstance(a, list) else 1 for a in actions)


def _containers(resource: Resource, _: Run) -> int | None:
    return len(resource.json_input("containerDefinitions"))


def _list_in(block: str, key: str) -> Callable[[Resource, Run], int | None]:
    """The length of list `key` in the resource's `block` (a service's networkConfiguration, a function's
    vpcConfig); None without the block."""

    def measure(resource: Resource, _: Run) -> int | None:
        found = resource.plain_inputs.get(block)
        return None if found is None else len(found.get(key) or [])

    return measure


def _widgets(resource: Resource, _: Run) -> int | None:
    return len(resource.json_input("dashboardBody").get("widgets", []))


IAM = "IAM and AWS STS quotas (IAM User Guide)"
SQS = "Amazon SQS policy quotas (SQS Developer Guide)"


@cache
def quotas() -> tuple[Quota, ...]:
    """Every limit the rehearsal checks. Botocore's models carry the API reference's length limits."""
    return (
        Quota(
            "aws:appautoscaling/policy:Policy",
            "step adjustments per step scaling policy",
            20,
            "Application Auto Scaling quotas (Application Auto Scaling User Guide)",
            _step_adjustments,
        ),
        Quota(
            "aws:lambda/function:Function",
            "bytes of environment variables, in aggregate",
            4096,
            "Lambda quotas (Lambda Developer Guide): 4 KB",
            _lambda_environment,
        ),
        Quota(
            "aws:lambda/function:Function",
            "characters of description",
            api_max("lambda", "CreateFunction", "Description"),
            "Lambda API reference, CreateFunction",
            _length("description"),
        ),
        Quota(
            "aws:lambda/function:Function",
            "subnets in its VPC config",
            api_max("lambda", "CreateFunction", "VpcConfig", "SubnetIds"),
            "Lambda API reference, VpcConfig",
            _list_in("vpcConfig", "subnetIds"),
        ),
        Quota(
            "aws:lambda/function:Function",
            "security groups in its VPC config",
            api_max("lambda", "CreateFunction", "VpcConfig", "SecurityGroupIds"),
            "Lambda API reference, VpcConfig",
            _list_in("vpcConfig", "securityGroupIds"),
        ),
        Quota("aws:iam/role:Role", "characters of trust policy (default quota)", 2048, IAM, _trust_policy),
        Quota("aws:iam/role:Role", "characters of inline policies, in aggregate", 10240, IAM, _role_inline_policies),
        Quota(
            "aws:cloudwatch/metricAlarm:MetricAlarm",
            "characters of alarm description",
            api_max("cloudwatch", "PutMetricAlarm", "AlarmDescription"),
            "CloudWatch API reference, PutMetricAlarm",
            _length("alarmDescription"),
        ),
        Quota(
            "aws:cloudwatch/logMetricFilter:LogMetricFilter",
            "characters of filter pattern",
            api_max("logs", "PutMetricFilter", "filterPattern"),
            "CloudWatch Logs API reference, PutMetricFilter",
            _length("pattern"),
        ),
        Quota(
            "aws:cloudwatch/eventRule:EventRule",
            "characters of event pattern (default quota)",
            2048,
            "Amazon EventBridge quotas (EventBridge User Guide)",
            _length("eventPattern"),
        ),
        Quota(
            "aws:cloudwatch/eventRule:EventRule",
            "characters of description",
            api_max("events", "PutRule", "Description"),
            "EventBridge API reference, PutRule",
            _length("description"),
        ),
        Quota(
            "aws:cloudwatch/eventRule:EventRule",
            "targets per rule",
            5,
            "Amazon EventBridge targets (EventBridge User Guide)",
            _rule_targets,
        ),
        Quota("aws:sqs/queuePolicy:QueuePolicy", "bytes of queue policy", 8192, SQS, _queue_policy_bytes),
        Quota("aws:sqs/queuePolicy:QueuePolicy", "statements in a queue policy", 20, SQS, _queue_policy_statements),
        Quota("aws:sqs/queuePolicy:QueuePolicy", "actions in one statement", 7, SQS, _queue_policy_actions),
        Quota(
            "aws:ecs/taskDefinition:TaskDefinition",
            "containers per task definition",
            10,
            "Amazon ECS service quotas (ECS Developer Guide)",
            _containers,
        ),
        Quota(
            "aws:ecs/service:Service",
            "subnets in its awsvpc configuration",
            16,
            "ECS API reference, AwsVpcConfiguration",
            _list_in("networkConfiguration", "subnets"),
        ),
        Quota(
            "aws:ecs/service:Service",
            "security groups in its awsvpc configuration",
            5,
            "ECS API reference, AwsVpcConfiguration",
            _list_in("networkConfiguration", "securityGroups"),
        ),
        Quota(
            "aws:cloudwatch/dashboard:Dashboard",
            "widgets per dashboard",
            100,
            "CloudWatch API reference, Dashboard Body Structure and Syntax",
            _widgets,
        ),
    )


def check(run: Run) -> Iterator[Finding]:
    """Every quota measured on every resource it applies to (violated or not)."""
    for quota in quotas():
        for resource in run.of_type(quota.typ):
            value = quota.measure(resource, run)
            if value is not None:
                yield Finding(quota, resource, value)
