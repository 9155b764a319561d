"""The customer-managed KMS key (config `kmsKeyArn`): what the roles get on it, and what its key policy needs.

The program uses a key it does not own, so it cannot change the key's policy. IAM roles use the key through
the services with identity-policy statements (`decrypt_through`): kms:Decrypt only for the readers (whoever runs
`pulumi up` and `prefect deploy` writes the secret and the flow code with their own credentials, see
docs/security.md), and kms:GenerateDataKey* too for the roles that publish to the alert topic (`PUBLISH_ACTIONS`).
They work when the key policy lets the account's IAM decide (the default key policy's "Enable IAM User
Permissions" statement). AWS services that write into this stack's resources on their own behalf need statements
in the key policy itself (`key_policy_statements`, which docs/security.md prints for the user to add).

A reader of a CloudWatch Logs group needs no KMS permission: CloudWatch Logs encrypts and decrypts with
its own principal, which the key policy allows (CloudWatch Logs user guide, "Encrypt log data in
CloudWatch Logs using AWS Key Management Service": the caller needs logs:GetLogEvents only).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

Statement = dict[str, Any]  # as components.agent_roles.Statement, which imports this module


def via_service(parent: pulumi.Resource, service: str) -> pulumi.Output[str]:
    """`kms:ViaService`'s value for `service` in this stack's region, e.g. `s3.us-east-1.amazonaws.com`."""
    invoke = pulumi.InvokeOutputOptions(parent=parent)
    region = aws.get_region_output(opts=invoke).region
    dns_suffix = aws.get_partition_output(opts=invoke).dns_suffix  # amazonaws.com.cn in China
    return pulumi.Output.format("{0}.{1}.{2}", service, region, dns_suffix)


# What a publisher to an encrypted SNS topic needs on its key (SNS developer guide, "Configuring AWS KMS
# permissions": publishers need kms:GenerateDataKey* and kms:Decrypt).
PUBLISH_ACTIONS = ["kms:GenerateDataKey*", "kms:Decrypt"]


def decrypt_through(
    parent: pulumi.Resource, sid: str, key_arn: str | None, service: str, actions: str | list[str] = "kms:Decrypt"
) -> list[Statement]:
    """kms:Decrypt (or `actions`) on the user's key, only in requests `service` makes for the caller; none
    without a key."""
    if key_arn is None:
        return []
    return [
        {
            "Sid": sid,
            "Effect": "Allow",
            "Action": actions,
            "Resource": key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": via_service(parent, service)}},
        }
    ]


# EventBridge sending to an SSE-KMS queue (SQS developer guide, "Amazon SQS key management", "Configure
# KMS permissions for AWS services"), with no condition (one EventBridge does not send would drop every event
# silently); the queue policy names the rule.
EVENTBRIDGE_SENDS_TO_QUEUE: Statement = {
    "Sid": "EventBridgeSendsToQueue",
    "Effect": "Allow",
    "Principal": {"Service": "events.amazonaws.com"},
    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
    "Resource": "*",
}


def key_policy_statements(
    *, partition: str, region: str, account: str, stack: str, ecs_pool: bool, functions: list[str]
) -> list[Statement]:
    """The statements a user's key policy needs for this stack (in a key policy, "Resource": "*" is the key).

    CloudWatch Logs' statement is the one the CloudWatch Logs guide gives, scoped by its encryption
    context to this stack's log groups (the worker's, the alerts' stopped-task log, and `/aws/lambda/<name>`
    of each of the stack's `functions`); without it, creating the log group fails. EventBridge's only for an
    `ecs` pool's observer queue. The alert topic needs none: the roles that publish to it use the key through IAM
    (`decrypt_through` with `PUBLISH_ACTIONS`), and no AWS service publishes to it on its own behalf.
    """
    log_groups = f"arn:{partition}:logs:{region}:{account}:log-group:"
    statements: list[Statement] = [
        {
            "Sid": "CloudWatchLogsEncryptThisStack",
            "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            "Resource": "*",
            "Condition": {
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": [
                        f"{log_groups}/prefect-fargate/{stack}/*",
                        f"{log_groups}/aws/events/prefect-fargate-{stack}/*",
                        *(f"{log_groups}/aws/lambda/{function}" for function in functions),
                    ]
                }
            },
        }
    ]
    if ecs_pool:
        statements.append(EVENTBRIDGE_SENDS_TO_QUEUE)
    return statements
