"""EcsPoolRoles: IAM for an `ecs` work pool, where every flow run is its own Fargate task.

- flow-run task role (what flow code runs as): list and read the flow bucket, nothing else;
- a policy on the worker's task role with exactly what prefect-aws's ECS worker calls: register
  (never privileged) and describe this stack's flow-run task definition families, run them on this
  cluster only, stop/describe/tag this cluster's tasks, describe subnets and VPCs (to check the
  network configuration), read this stack's logs, read and delete its observer's messages on this
  stack's queue only, and pass only the flow-run task role and the execution role, only to ECS tasks.
Needs the worker's roles (AgentRoles), the cluster and log group (WorkerCluster), the flow bucket and
the observer's queue (EcsTaskEvents).
Flow-run tasks reuse the worker's execution role: it already pulls this image, writes this log group
and reads this secret, which is all a flow-run task needs to start.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.agent_roles import (
    ECS_TASKS,
    Statement,
    arn_context,
    bucket_read_statements,
    ecs_tasks_trust,
    policy_document,
)
from components.job_templates import FAMILY_SEPARATOR
from components.kms import decrypt_through


@dataclass(frozen=True, kw_only=True)
class EcsPoolRolesArgs:
    """What the roles may touch."""

    bucket_arn: pulumi.Input[str]
    worker_task_role_name: pulumi.Input[str]  # the worker's task role (AgentRoles), which gets the ECS policy
    execution_role_arn: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    log_group_name: pulumi.Input[str]
    observer_queue_arn: pulumi.Input[str]
    family_prefix: str  # the pool's task definition families are `<prefix>_<cpu>_<memory>` (job_templates)
    kms_key_arn: str | None = None  # the user's key (config kmsKeyArn) on the bucket and the queue


def ecs_worker_statements(
    *,
    partition: pulumi.Input[str],
    region: pulumi.Input[str],
    account: pulumi.Input[str],
    cluster_arn: pulumi.Input[str],
    cluster_name: pulumi.Input[str],
    log_group_name: pulumi.Input[str],
    observer_queue_arn: pulumi.Input[str],
    passed_role_arns: list[pulumi.Input[str]],
    family_prefix: str,
) -> list[Statement]:
    """What prefect-aws's ECS worker calls, each on the narrowest resource AWS accepts."""
    ecs = pulumi.Output.format("arn:{0}:ecs:{1}:{2}", partition, region, account)
    this_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
    cluster_tasks = pulumi.Output.format("{0}:task/{1}/*", ecs, cluster_name)
    # This stack's families and their revisions (`<family>:<n>`).
    families = pulumi.Output.format("{0}:task-definition/{1}{2}*", ecs, family_prefix, FAMILY_SEPARATOR)
    return [
        # Sizes are left to deployments (job variables cpu/memory, any pair Fargate accepts), so
        # ecs:task-cpu/ecs:task-memory are not capped; a privileged container never is allowed (Fargate
        # refuses one anyway). `ecs:privileged` is a String key of RegisterTaskDefinition only (Service
        # Authorization Reference; parliament's copy agrees), carrying the request's `privileged` as "true" or
        # "false": StringEquals "false" passes an explicit false and refuses "true"; IfExists passes a request
        # that sets no `privileged` at all, which has no such key (prefect-aws's worker sets none).
        {
            "Sid": "RegisterOwnTaskDefinitions",
            "Effect": "Allow",
            "Action": "ecs:RegisterTaskDefinition",
            "Resource": families,
            "Condition": {"StringEqualsIfExists": {"ecs:privileged": "false"}},
        },
        # DescribeTaskDefinition takes no resource type (AWS's Service Authorization Reference, as in
        # cfn-lint's Policies.json): a statement naming the families would never match, and the worker's
        # lookup of a family's latest revision would be denied.
        {
            "Sid": "DescribeTaskDefinitions",
            "Effect": "Allow",
            "Action": "ecs:DescribeTaskDefinition",
            "Resource": "*",
        },
        {
            "Sid": "RunOnThisCluster",
            "Effect": "Allow",
            "Action": "ecs:RunTask",
            "Resource": families,
            "Condition": this_cluster,
        },
        {
            "Sid": "ThisClustersTasks",
            "Effect": "Allow",
            "Action": ["ecs:StopTask", "ecs:DescribeTasks"],
            "Resource": cluster_tasks,
            "Condition": this_cluster,
        },
        # RunTask with tags (flow run id, deployment, ...) needs TagResource on the new task.
        {
            "Sid": "TagOnRunTask",
            "Effect": "Allow",
            "Action": "ecs:TagResource",
            "Resource": cluster_tasks,
            "Condition": {"StringEquals": {"ecs:CreateAction": "RunTask"}},
        },
        # The worker checks the subnets belong to the VPC; EC2 Describe* accept no resource.
        {"Sid": "Network", "Effect": "Allow", "Action": ["ec2:DescribeSubnets", "ec2:DescribeVpcs"], "Resource": "*"},
        {
            "Sid": "FlowRunLogs",
            "Effect": "Allow",
            "Action": "logs:GetLogEvents",
            "Resource": pulumi.Output.format(
                "arn:{0}:logs:{1}:{2}:log-group:{3}:log-stream:*", partition, region, account, log_group_name
            ),
        },
        # The observer (prefect_aws/observers/ecs.py, SqsSubscriber.stream_messages) finds its queue by
        # name, receives, deletes a handled message (`ack`) and extends a message's visibility while its
        # handlers run (`extend_visibility`). Its other calls are granted above: DescribeTasks for a
        # task's tags (EcsTaskTagsReader.read_tags), DescribeTaskDefinition and GetLogEvents to forward
        # a crashed run's last logs (_forward_cloudwatch_logs).
        {
            "Sid": "ObserverQueue",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
            "Resource": observer_queue_arn,
        },
        {
            "Sid": "PassFlowRunRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": passed_role_arns,
            "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS}},
        },
    ]


class EcsPoolRoles(pulumi.ComponentResource):
    """The flow-run task role, and the ECS worker's policy on the worker's task role."""

    flow_run_role: aws.iam.Role
    """Role flow-run tasks run as: reads the flow bucket only."""
    worker_policy: aws.iam.RolePolicy
    """The ECS worker's permissions, on the worker's task role."""

    def __init__(self, name: str, args: EcsPoolRolesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:iam:EcsPoolRoles", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account, partition, region = arn_context(self)

        self.flow_run_role = aws.iam.Role(
            f"{name}-flow-run", assume_role_policy=ecs_tasks_trust(account, partition, region), opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-flow-run-policy",
            role=self.flow_run_role.id,
            policy=policy_document(
                *bucket_read_statements(args.bucket_arn),
                *decrypt_through(self, "FlowCodeKey", args.kms_key_arn, "s3"),
            ),
            opts=child,
        )
        self.worker_policy = aws.iam.RolePolicy(
            f"{name}-worker-policy",
            role=args.worker_task_role_name,
            policy=policy_document(
                *ecs_worker_statements(
                    partition=partition,
                    region=region,
                    account=account,
                    cluster_arn=args.cluster_arn,
                    cluster_name=args.cluster_name,
                    log_group_name=args.log_group_name,
                    observer_queue_arn=args.observer_queue_arn,
                    passed_role_arns=[args.execution_role_arn, self.flow_run_role.arn],
                    family_prefix=args.family_prefix,
                ),
                # ReceiveMessage decrypts the observer's messages through SQS.
                *decrypt_through(self, "ObserverQueueKey", args.kms_key_arn, "sqs"),
            ),
            opts=child,
        )
        self.register_outputs({"flow_run_role_arn": self.flow_run_role.arn})
