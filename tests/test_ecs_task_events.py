"""The ECS observer's queue (EcsTaskEvents): what the program declares for an `ecs` pool, and that
AWS (moto) accepts it and routes this cluster's task events, and only those, to the queue."""

from __future__ import annotations

import json
import re
from typing import Any

import boto3
import pytest
from conftest import STACK, Run, name_values, run_program
from ecs_task_event import (
    COMPONENT,
    capacity_failure,
    create_observer_aws,
    image_pull_failure,
    rendered,
    send_task_event,
)
from test_ecs_pool import ECS_CONFIG, statements

from components.agent_service import ECS_OBSERVER_QUEUE_SETTING
from components.ecs_task_events import observer_queue_name


@pytest.fixture(scope="module")
def ecs_run() -> Run:
    return run_program(ECS_CONFIG)


@pytest.fixture(scope="module")
def found(ecs_run: Run) -> dict[str, Any]:
    return rendered(ecs_run)


def cluster_arn(run: Run) -> str:
    return run.one("aws:ecs/cluster:Cluster").outputs["arn"]


# -- under mocks -----------------------------------------------------------------------------------


def test_the_worker_is_told_the_stacks_queue(ecs_run: Run, found: dict[str, Any]) -> None:
    queue = found["queue"].outputs["name"]
    assert queue == observer_queue_name(STACK, "prefect")
    assert name_values(ecs_run.container()["environment"])[ECS_OBSERVER_QUEUE_SETTING] == queue


def test_process_pools_get_none_of_it(default_run: Run, ecs_run: Run) -> None:
    def observer_resources(run: Run) -> list[str]:
        return [r.name for r in run.resources if r.typ.startswith("aws:sqs/") or COMPONENT in r.name]

    assert observer_resources(default_run) == []
    assert len(observer_resources(ecs_run)) == 5  # the check finds them where they are
    assert ECS_OBSERVER_QUEUE_SETTING not in name_values(default_run.container()["environment"])


def test_rule_takes_this_clusters_task_state_changes(ecs_run: Run, found: dict[str, Any]) -> None:
    pattern = found["rule"].json_input("eventPattern")
    assert pattern == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {"clusterArn": [cluster_arn(ecs_run)]},
    }
    target = found["target"].plain_inputs
    assert (target["rule"], target["arn"]) == (found["rule"].outputs["name"], found["queue"].outputs["arn"])


def test_only_that_rule_may_send(found: dict[str, Any]) -> None:
    policy = found["policy"].plain_inputs
    assert policy["queueUrl"] == found["queue"].outputs["url"]
    (statement,) = json.loads(policy["policy"])["Statement"]
    assert statement == {
        "Sid": "OnlyThisClustersTaskEvents",
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": found["queue"].outputs["arn"],
        "Condition": {"ArnEquals": {"aws:SourceArn": found["rule"].outputs["arn"]}},
    }


def test_queues_are_encrypted_bounded_and_redriven(found: dict[str, Any]) -> None:
    from prefect_aws.observers.ecs import SQS_MESSAGE_VISIBILITY_TIMEOUT_SECONDS

    queue, dead_letter = found["queue"].plain_inputs, found["dead_letter"].plain_inputs
    assert queue["sqsManagedSseEnabled"] is True and dead_letter["sqsManagedSseEnabled"] is True
    assert json.loads(queue["redrivePolicy"]) == {
        "deadLetterTargetArn": found["dead_letter"].outputs["arn"],
        "maxReceiveCount": 3,
    }
    assert queue["messageRetentionSeconds"] == 24 * 3600
    # Messages keep their first enqueue time in a standard dead-letter queue: it must keep them longer.
    assert dead_letter["messageRetentionSeconds"] == 14 * 24 * 3600 > queue["messageRetentionSeconds"]
    assert queue["visibilityTimeoutSeconds"] == SQS_MESSAGE_VISIBILITY_TIMEOUT_SECONDS
    assert dead_letter["name"] == f"{queue['name']}-dlq"


def test_worker_may_use_this_queue_only_as_the_observer_does(ecs_run: Run, found: dict[str, Any]) -> None:
    observer = statements(ecs_run, "ecs-pool-worker-policy")["ObserverQueue"]
    assert observer["Action"] == sorted(
        ["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
    )
    assert observer["Resource"] == [found["queue"].outputs["arn"]]
    assert "Condition" not in observer
    every = [a for s in statements(ecs_run, "ecs-pool-worker-policy").values() for a in s["Action"]]
    assert [a for a in every if a.startswith("sqs:")] == observer["Action"]  # no SQS grant anywhere else


@pytest.mark.parametrize(
    "stack",
    ["dev", "prod", "feature.x-1", "a-very-long-stack-name-for-a-feature-branch-of-the-data-team-2026-11"],
)
def test_names_are_per_stack_and_valid(stack: str) -> None:
    name = observer_queue_name(stack, "prefect")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", name)
    assert len(f"{name}-rule") <= 64 and len(f"{name}-dlq") <= 80  # EventBridge's and SQS's limits
    others = {observer_queue_name(other, "prefect") for other in ("dev", "prod", "feature.x-1", stack + "2")}
    assert (name in others) == (stack in ("dev", "prod", "feature.x-1"))
    assert observer_queue_name(stack, "other") != name


# -- in moto ---------------------------------------------------------------------------------------


def test_aws_accepts_it_and_routes_only_this_clusters_events(
    aws_env: None, ecs_run: Run, found: dict[str, Any]
) -> None:
    sqs, events = boto3.client("sqs"), boto3.client("events")
    created = create_observer_aws(ecs_run, sqs, events)
    # What AWS names them is what the policies were written with.
    assert created.queue_arn == found["queue"].outputs["arn"]
    assert created.dead_letter_arn == found["dead_letter"].outputs["arn"]
    assert created.rule_arn == found["rule"].outputs["arn"]
    attributes = sqs.get_queue_attributes(QueueUrl=created.queue_url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"] == created.dead_letter_arn
    assert attributes["SqsManagedSseEnabled"] == "true"

    cluster = cluster_arn(ecs_run)
    other_cluster = cluster.rsplit("/", 1)[0] + "/another-stacks-cluster"
    task = f"{cluster.replace(':cluster/', ':task/')}/0123456789abcdef0123456789abcdef"
    other_task = f"{other_cluster.replace(':cluster/', ':task/')}/fedcba9876543210fedcba9876543210"
    send_task_event(events, capacity_failure(other_cluster, other_task))
    send_task_event(events, image_pull_failure(cluster, task))

    received = sqs.receive_message(QueueUrl=created.queue_url, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(message["Body"]) for message in received]
    assert [(body["detail-type"], body["source"], body["detail"]["taskArn"]) for body in bodies] == [
        ("ECS Task State Change", "aws.ecs", task)
    ]


def test_the_pattern_check_can_fail(aws_env: None, ecs_run: Run) -> None:
    """Without the cluster condition, the other cluster's event does reach the queue."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    created = create_observer_aws(ecs_run, sqs, events)
    rule = rendered(ecs_run)["rule"].plain_inputs
    events.put_rule(Name=rule["name"], EventPattern=json.dumps({"source": ["aws.ecs"]}))
    other = "arn:aws:ecs:us-east-1:123456789012:cluster/another-stacks-cluster"
    send_task_event(events, capacity_failure(other, other.replace(":cluster/", ":task/") + "/0123456789abcdef"))
    assert sqs.receive_message(QueueUrl=created.queue_url).get("Messages")
