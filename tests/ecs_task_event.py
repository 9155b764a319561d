"""The observer's AWS side in moto: the queues, rule, target and policy the program renders, and ECS
Task State Change events sent through EventBridge as ECS would send them.

Used by the fast tests (moto in-process) and the runtime test (a moto server the worker talks to).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from conftest import REGION, Run


@dataclass(frozen=True)
class ObserverAws:
    """What was created in moto, by name and ARN as AWS answered."""

    queue_url: str
    queue_arn: str
    dead_letter_url: str
    dead_letter_arn: str
    rule_arn: str


COMPONENT = "prefect-ecs-events"  # EcsTaskEvents' name in the program: its resources' names start with it


def rendered(run: Run) -> dict[str, Any]:
    """The program's observer resources (EcsTaskEvents'), by role."""
    return {
        "queue": run.one("aws:sqs/queue:Queue", f"{COMPONENT}-queue"),
        "dead_letter": run.one("aws:sqs/queue:Queue", f"{COMPONENT}-dlq"),
        "rule": run.one("aws:cloudwatch/eventRule:EventRule", COMPONENT),
        "target": run.one("aws:cloudwatch/eventTarget:EventTarget", COMPONENT),
        "policy": run.one("aws:sqs/queuePolicy:QueuePolicy", COMPONENT),
    }


def _attribute(value: Any) -> str:
    """An SQS attribute value as text (Pulumi hands numbers over as floats)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(int(value)) if isinstance(value, float) else str(value)


def _queue_attributes(inputs: dict[str, Any]) -> dict[str, str]:
    """A queue's Pulumi inputs as the CreateQueue attributes the provider sends."""
    names = {
        "messageRetentionSeconds": "MessageRetentionPeriod",
        "visibilityTimeoutSeconds": "VisibilityTimeout",
        "sqsManagedSseEnabled": "SqsManagedSseEnabled",
        "redrivePolicy": "RedrivePolicy",
    }
    return {names[key]: _attribute(value) for key, value in inputs.items() if key in names}


def create_observer_aws(run: Run, sqs: Any, events: Any) -> ObserverAws:
    """Create the rendered queues, rule, target and queue policy with boto3 (botocore checks each
    request's shape) in moto, and return what AWS answered."""
    found = rendered(run)
    dead_letter = found["dead_letter"].plain_inputs
    dead_letter_url = sqs.create_queue(QueueName=dead_letter["name"], Attributes=_queue_attributes(dead_letter))[
        "QueueUrl"
    ]
    queue = found["queue"].plain_inputs
    queue_url = sqs.create_queue(QueueName=queue["name"], Attributes=_queue_attributes(queue))["QueueUrl"]
    rule = found["rule"].plain_inputs
    rule_arn = events.put_rule(
        Name=rule["name"], EventPattern=rule["eventPattern"], Description=rule["description"], State="ENABLED"
    )["RuleArn"]
    target = found["target"].plain_inputs
    assert target["rule"] == rule["name"]
    events.put_targets(Rule=target["rule"], Targets=[{"Id": "observer-queue", "Arn": target["arn"]}])
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": found["policy"].plain_inputs["policy"]})

    def arn(url: str) -> str:
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    return ObserverAws(queue_url, arn(queue_url), dead_letter_url, arn(dead_letter_url), rule_arn)


def task_stopped_detail(
    cluster_arn: str, task_arn: str, stopped_reason: str, containers: list[dict[str, Any]]
) -> dict[str, Any]:
    """The `detail` of a Task State Change event for a Fargate task that stopped before it started,
    in the format of AWS's documented example ("Amazon ECS task state change events")."""
    return {
        "attachments": [],
        "availabilityZone": f"{REGION}a",
        "clusterArn": cluster_arn,
        "containers": containers,
        "createdAt": "2026-11-28T02:00:00.000Z",
        "launchType": "FARGATE",
        "cpu": "1024",
        "memory": "2048",
        "desiredStatus": "STOPPED",
        "group": "family:prefect_fargate-pool",
        "lastStatus": "STOPPED",
        "overrides": {"containerOverrides": [{"name": "prefect"}]},
        "stopCode": "TaskFailedToStart",
        "stoppedAt": "2026-11-28T02:00:41.000Z",
        "stoppedReason": stopped_reason,
        "stoppingAt": "2026-11-28T02:00:40.000Z",
        "updatedAt": "2026-11-28T02:00:41.000Z",
        "taskArn": task_arn,
        "taskDefinitionArn": task_arn.split(":task/")[0] + ":task-definition/prefect_fargate-pool:1",
        "version": 3,
        "platformVersion": "1.4.0",
    }


def image_pull_failure(cluster_arn: str, task_arn: str) -> dict[str, Any]:
    """An image that cannot be pulled: the container is listed, with no exit code."""
    reason = (
        "CannotPullContainerError: pull image manifest has been retried 7 time(s): failed to resolve ref "
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:missing: not found"
    )
    container = {
        "containerArn": task_arn.replace(":task/", ":container/") + "/" + uuid.uuid4().hex,
        "lastStatus": "STOPPED",
        "name": "prefect",
        "reason": reason,
        "taskArn": task_arn,
    }
    return task_stopped_detail(cluster_arn, task_arn, reason, [container])


def capacity_failure(cluster_arn: str, task_arn: str) -> dict[str, Any]:
    """No Fargate capacity: ECS stops the task before any container exists."""
    reason = "Capacity is unavailable at this time. Please try again later or in a different availability zone"
    return task_stopped_detail(cluster_arn, task_arn, reason, [])


def send_task_event(events: Any, detail: dict[str, Any]) -> None:
    """Send a Task State Change event through EventBridge (moto's bus applies the rules' patterns and
    delivers to their targets, wrapped in the event envelope EventBridge gives an SQS target)."""
    answer = events.put_events(
        Entries=[
            {
                "Source": "aws.ecs",
                "DetailType": "ECS Task State Change",
                "Resources": [detail["taskArn"]],
                "Detail": json.dumps(detail),
            }
        ]
    )
    assert answer["FailedEntryCount"] == 0, answer
