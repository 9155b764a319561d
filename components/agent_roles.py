"""AgentRoles: the worker task's two IAM roles, each scoped to this stack's resources.

- execution role (used by ECS to start the task): pull from this one ECR repository (or read the one
  secret with a non-ECR registry's credentials), write to this one log group, read this one secret;
- task role (used by the worker and its flow runs): list and read the flow bucket (`process` pool;
  for an `ecs` pool EcsPoolRoles gives it the ECS worker's policy instead).
Both are trusted by `ecs-tasks.amazonaws.com`, each with exactly the conditions AWS documents for it
(the task role: tasks of this account only). No managed policies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.kms import decrypt_through

ECS_TASKS = "ecs-tasks.amazonaws.com"
Statement = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class AgentRolesArgs:
    """ARNs of the resources the roles may touch."""

    repository_arn: pulumi.Input[str] | None  # None: the image is not in ECR (pulled with registry credentials)
    log_group_name: str  # created by WorkerCluster; named up front so neither waits for the other
    secret_arn: pulumi.Input[str] | None  # None: no API key (a self-hosted server without authentication)
    bucket_arn: pulumi.Input[str]
    # False for an `ecs` pool: flow runs are their own tasks, and the worker only submits them
    # (EcsPoolRoles gives its task role the ECS worker's policy instead of the bucket).
    worker_runs_flows: bool = True
    kms_key_arn: str | None = None  # the user's key (config kmsKeyArn) on the secret and the bucket
    # A non-ECR registry's login (ECS private registry authentication): a Secrets Manager secret's full ARN.
    registry_credentials_arn: str | None = None


def ecs_tasks_trust(
    account_id: pulumi.Input[str], partition: pulumi.Input[str], region: pulumi.Input[str]
) -> pulumi.Output[str]:
    """A task role's trust: ECS tasks of this account only. The confused-deputy conditions are the ones AWS
    documents for task roles, "Amazon ECS task IAM role" (Create the task IAM role):
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html"""
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": ECS_TASKS},
                    "Action": "sts:AssumeRole",
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": account_id},
                        "ArnLike": {
                            "aws:SourceArn": pulumi.Output.format(
                                "arn:{0}:ecs:{1}:{2}:*", partition, region, account_id
                            )
                        },
                    },
                }
            ],
        }
    )


def execution_role_trust() -> str:
    """The task execution role's trust, as "Amazon ECS task execution IAM role" documents it: the ECS tasks
    service, with no aws:SourceArn/aws:SourceAccount condition (AWS documents those for task roles, not for
    the role its agents assume to start a task; one it does not expect can keep every task from starting):
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html"""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": ECS_TASKS}, "Action": "sts:AssumeRole"}],
        }
    )


def arn_context(parent: pulumi.Resource) -> tuple[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str]]:
    """This stack's account, partition and region, to build the ARNs that policies scope to."""
    invoke = pulumi.InvokeOutputOptions(parent=parent)
    return (
        aws.get_caller_identity_output(opts=invoke).account_id,
        aws.get_partition_output(opts=invoke).partition,
        aws.get_region_output(opts=invoke).region,
    )


def policy_document(*statements: Statement) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def execution_statements(args: AgentRolesArgs, log_group_arn: pulumi.Input[str]) -> list[Statement]:
    statements: list[Statement] = []
    if args.repository_arn is not None:
        statements += [
            # GetAuthorizationToken is account-wide: AWS does not accept a resource for it.
            {"Sid": "EcrToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "EcrPull",
                "Effect": "Allow",
                "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
                "Resource": args.repository_arn,
            },
        ]
    statements += [
        {
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": pulumi.Output.concat(log_group_arn, ":log-stream:*"),
        },
    ]
    if args.registry_credentials_arn is not None:
        # "Private registry authentication for tasks": the execution role reads the secret when a task starts.
        statements.append(
            {
                "Sid": "RegistryCredentials",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": args.registry_credentials_arn,
            }
        )
    if args.secret_arn is not None:
        statements.append(
            {"Sid": "ApiKey", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": args.secret_arn}
        )
    return statements


def bucket_read_statements(bucket_arn: pulumi.Input[str]) -> list[Statement]:
    return [
        {"Sid": "ListFlowBucket", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
        {
            "Sid": "ReadFlowCode",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": pulumi.Output.concat(bucket_arn, "/*"),
        },
    ]


class AgentRoles(pulumi.ComponentResource):
    """Execution role and task role for the worker's ECS task."""

    execution_role: aws.iam.Role
    """Role ECS uses to pull the image, write logs and read the API key."""
    task_role: aws.iam.Role
    """Role the worker process runs as."""

    def __init__(self, name: str, args: AgentRolesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:iam:AgentRoles", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account, partition, region = arn_context(self)
        log_group_arn = pulumi.Output.format(
            "arn:{0}:logs:{1}:{2}:log-group:{3}", partition, region, account, args.log_group_name
        )

        self.execution_role = aws.iam.Role(f"{name}-execution", assume_role_policy=execution_role_trust(), opts=child)
        aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=self.execution_role.id,
            policy=policy_document(
                *execution_statements(args, log_group_arn),
                # ECS reads the secret through Secrets Manager; its logs need no KMS permission (kms.py).
                *(decrypt_through(self, "ApiKeyKey", args.kms_key_arn, "secretsmanager") if args.secret_arn else []),
            ),
            opts=child,
        )
        self.task_role = aws.iam.Role(
            f"{name}-task", assume_role_policy=ecs_tasks_trust(account, partition, region), opts=child
        )
        if args.worker_runs_flows:
            aws.iam.RolePolicy(
                f"{name}-task-policy",
                role=self.task_role.id,
                policy=policy_document(
                    *bucket_read_statements(args.bucket_arn),
                    *decrypt_through(self, "FlowCodeKey", args.kms_key_arn, "s3"),
                ),
                opts=child,
            )
        self.register_outputs(
            {
                "execution_role_arn": self.execution_role.arn,
                "task_role_arn": self.task_role.arn,
            }
        )
