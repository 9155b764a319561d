"""EcsTaskEvents: the queue prefect-aws's ECS observer reads, filled by EventBridge, for an `ecs` pool.

- an SQS queue (SQS-managed encryption, or the user's key with config kmsKeyArn; one day's retention)
  that receives this cluster's ECS Task State Change events, and a dead-letter queue (14 days) for
  events the observer failed on 3 times;
- an EventBridge rule matching those events on `detail.clusterArn` (the field the event carries, per
  AWS's documented "Task state change event" example), with the queue as its target;
- a queue policy that lets EventBridge send for that rule only (`aws:SourceArn`).
Needs the cluster ARN (AgentService). Names come from the stack and the worker's name, as the log
group's do, so two stacks in one account and region never share a queue. The worker finds the queue
by name (`ecs_worker_environment` in agent_service) and may use it (EcsPoolRoles).

With a flow-run task's events, the observer marks a run whose task stopped before the flow started
(image pull, capacity, network errors) CRASHED with ECS's stop reason, instead of leaving it PENDING
(prefect_aws/observers/ecs.py, `mark_runs_as_crashed`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.agent_roles import policy_document

# The observer receives with this visibility timeout and extends it while a handler runs
# (prefect_aws/observers/ecs.py, SQS_MESSAGE_VISIBILITY_TIMEOUT_SECONDS); the queue's default matches.
VISIBILITY_TIMEOUT_SECONDS = 300
# A message the observer took but did not delete (a handler raised, the worker died mid-event) comes
# back after the visibility timeout; after 3 receives it moves to the dead-letter queue.
MAX_RECEIVES = 3
# An event nobody read within a day is stale: its run has long been resolved some other way.
RETENTION_SECONDS = 24 * 3600
# A standard queue's messages expire by their first enqueue time, also in the dead-letter queue
# (SQS developer guide, "Dead-letter queues"): keep them far longer, for the one who investigates.
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's maximum
_SQS_NAME = re.compile(r"[^A-Za-z0-9_-]")
_BASE_LENGTH = 44  # + "-ecs-events" + "-rule": 60 characters, EventBridge allows 64 (SQS 80)


def observer_queue_name(stack: str, name: str) -> str:
    """The observer queue's name for this stack's worker `name`, in SQS's alphabet and length."""
    base = _SQS_NAME.sub("-", f"prefect-fargate-{stack}-{name}")
    if len(base) > _BASE_LENGTH:  # keep it unique: the full name's hash replaces the cut-off end
        base = f"{base[: _BASE_LENGTH - 9]}-{hashlib.sha256(base.encode()).hexdigest()[:8]}"
    return f"{base}-ecs-events"


def task_state_change_pattern(cluster_arn: str) -> dict[str, Any]:
    """This cluster's ECS Task State Change events; ECS puts the cluster in `detail.clusterArn`."""
    return {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"], "detail": {"clusterArn": [cluster_arn]}}


def queue_policy(queue_arn: pulumi.Input[str], rule_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """EventBridge may send to the queue on behalf of this one rule, and nothing else may."""
    return policy_document(
        {
            "Sid": "OnlyThisClustersTaskEvents",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
        }
    )


@dataclass(frozen=True, kw_only=True)
class EcsTaskEventsArgs:
    """Whose events, and the queue's name (`observer_queue_name`), which the worker is told."""

    cluster_arn: pulumi.Input[str]
    queue_name: str
    kms_key_arn: str | None = None  # None: SQS-managed encryption


class EcsTaskEvents(pulumi.ComponentResource):
    """This cluster's ECS task events, delivered by EventBridge to the observer's queue."""

    queue: aws.sqs.Queue
    """The queue the observer reads."""
    dead_letter_queue: aws.sqs.Queue
    """Events the observer failed on three times; not empty means crashed runs may have been missed."""
    rule: aws.cloudwatch.EventRule
    """The EventBridge rule sending this cluster's task events to the queue."""

    def __init__(self, name: str, args: EcsTaskEventsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:events:EcsTaskEvents", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # SQS-managed keys (SSE-SQS): EventBridge sends and the worker reads with no KMS permission. A KMS
        # key needs a key policy letting EventBridge use it (SQS developer guide, "Configure KMS
        # permissions for AWS services"), which the AWS-managed aws/sqs key's fixed policy cannot give:
        # only the user's own key (config kmsKeyArn, whose policy the user extends) replaces SSE-SQS.
        # With a key, sqs_managed_sse_enabled stays unset: the schema pulumi-aws wraps makes it Optional,
        # Computed and ConflictsWith kms_master_key_id (terraform-provider-aws internal/service/sqs/queue.go).
        sse_sqs = None if args.kms_key_arn else True
        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-dlq",
            name=f"{args.queue_name}-dlq",
            message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
            sqs_managed_sse_enabled=sse_sqs,
            kms_master_key_id=args.kms_key_arn,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-queue",
            name=args.queue_name,
            message_retention_seconds=RETENTION_SECONDS,
            visibility_timeout_seconds=VISIBILITY_TIMEOUT_SECONDS,
            sqs_managed_sse_enabled=sse_sqs,
            kms_master_key_id=args.kms_key_arn,
            redrive_policy=pulumi.Output.json_dumps(
                {"deadLetterTargetArn": self.dead_letter_queue.arn, "maxReceiveCount": MAX_RECEIVES}
            ),
            opts=child,
        )
        self.rule = aws.cloudwatch.EventRule(
            f"{name}-rule",
            name=f"{args.queue_name}-rule",
            description="ECS task state changes of the Prefect worker's cluster, for prefect-aws's observer",
            event_pattern=pulumi.Output.from_input(args.cluster_arn).apply(
                lambda arn: json.dumps(task_state_change_pattern(arn))
            ),
            opts=child,
        )
        aws.cloudwatch.EventTarget(f"{name}-target", rule=self.rule.name, arn=self.queue.arn, opts=child)
        policy = queue_policy(self.queue.arn, self.rule.arn)
        aws.sqs.QueuePolicy(f"{name}-queue-policy", queue_url=self.queue.url, policy=policy, opts=child)
        self.register_outputs({"queue_url": self.queue.url, "dead_letter_url": self.dead_letter_queue.url})
