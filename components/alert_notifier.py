"""AlertNotifier: the function between the stack's alarms and its alert topic (code in alert_notifier/).

Creates the function (python3.13, zipped by Pulumi from alert_notifier/'s modules: standard library and the
runtime's boto3 only), its role, its log group (the stack's retention), one invoke permission per alarm, and its
asynchronous invocation settings. Needs the topic and the alarms' names (known before the alarms exist).

Why it exists: CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed `alias/aws/sns` key
(they need kms:GenerateDataKey* on the topic's key, and that key's policy, which nobody can change, gives its use
only to principals of the account calling through SNS: hence the $1-a-month key the topic had before). An IAM role
of the account can publish to it. So each alarm invokes this function as its action (CloudWatch user guide, "Invoke
a Lambda function from an alarm", since December 2023: "CloudWatch alarms guarantees an asynchronous invocation of
the Lambda function for a given state change", and retries until Lambda accepts it), and its role publishes one
readable message. Lambda retries a failed asynchronous invocation twice; after that it sends the invocation record
(the alarm's event and the error) to the function's on-failure destination, the same topic, with the function's
role (Lambda developer guide, "Retaining records of asynchronous invocations"): a bug here still gets the alarm out.

The role may write its own log group and publish to exactly this topic (`publish_statements`, which any other role
of the stack that publishes to the topic uses too); with config kmsKeyArn, use the key through SNS only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.agent_roles import Statement, arn_context, policy_document
from components.kms import PUBLISH_ACTIONS, decrypt_through
from components.stack_controller import (
    MEMORY_MB,
    RUNTIME,
    function_logs_and_role,
    function_name,
    own_logs_statement,
    package_assets,
)

NOTIFIER_DIR = Path(__file__).resolve().parent.parent / "alert_notifier"
HANDLER = "alert_notifier.handler.handler"
TIMEOUT_SECONDS = 30  # one SNS Publish; an alarm's message waits in Lambda's queue, not here
RETRIES = 2  # Lambda's own default for asynchronous invocations, written down: the on-failure destination follows
# The principal CloudWatch alarms invoke a function as (the guide above; its resource policy example).
ALARMS_PRINCIPAL = "lambda.alarms.cloudwatch.amazonaws.com"


def notifier_function_name(stack: str) -> str:
    """The function's name, known up front (the user's key policy names its log group: components/kms.py)."""
    return function_name(stack, "alert-notifier")


def notifier_archive() -> pulumi.AssetArchive:
    """alert_notifier/'s Python modules."""
    return pulumi.AssetArchive(package_assets(NOTIFIER_DIR))


def publish_statements(
    parent: pulumi.Resource, topic_arn: pulumi.Input[str], kms_key_arn: str | None
) -> list[Statement]:
    """sns:Publish on exactly the alert topic, and with the user's key (config kmsKeyArn) the use of it that SNS
    makes for a publisher (kms:ViaService sns). Without kmsKeyArn the topic's key is AWS's `alias/aws/sns`, whose
    policy already lets any principal of the account use it through SNS: nothing more is needed."""
    return [
        {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic_arn},
        *decrypt_through(parent, "AlertTopicKey", kms_key_arn, "sns", PUBLISH_ACTIONS),
    ]


@dataclass(frozen=True, kw_only=True)
class AlertNotifierArgs:
    topic_arn: pulumi.Input[str]
    alarm_arns: dict[str, pulumi.Input[str]]  # every alarm that invokes it, by name suffix: one permission each
    log_retention_days: int
    kms_key_arn: str | None = None  # the user's key (config kmsKeyArn): the topic's and the log group's


class AlertNotifier(pulumi.ComponentResource):
    """The notifier function, its role, its log group, and the alarms' permission to invoke it."""

    function: aws.lambda_.Function
    """The function each alarm names as its action."""
    role: aws.iam.Role
    """The function's execution role: its own log group, and publishing to the alert topic."""
    log_group: aws.cloudwatch.LogGroup
    """`/aws/lambda/<function>`, with the stack's retention."""
    permissions: list[aws.lambda_.Permission]
    """Each alarm's permission to invoke the function (the alarms wait for them: their first OK is sent)."""

    def __init__(self, name: str, args: AlertNotifierArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:alerts:AlertNotifier", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account, _, _ = arn_context(self)
        fn_name = notifier_function_name(pulumi.get_stack())

        self.log_group, self.role = function_logs_and_role(
            self, name, fn_name, args.log_retention_days, args.kms_key_arn
        )
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=policy_document(
                own_logs_statement(self.log_group.arn),
                *publish_statements(self, args.topic_arn, args.kms_key_arn),
            ),
            opts=child,
        )
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=fn_name,
            description="prefect-fargate alert notifier: publishes each alarm's state change to the alert topic",
            runtime=RUNTIME,
            handler=HANDLER,
            code=notifier_archive(),
            role=self.role.arn,
            memory_size=MEMORY_MB,
            timeout=TIMEOUT_SECONDS,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables={"ALERT_TOPIC_ARN": args.topic_arn}),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=self.log_group.name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, self.log_group]),
        )
        # Lambda checks at PutFunctionEventInvokeConfig that the role may publish to the destination; the provider
        # retries while the role policy propagates (terraform-provider-aws, function_event_invoke_config.go,
        # resourceFunctionEventInvokeConfigCreate: RetryWhen on "does not have permissions").
        aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-on-failure",
            function_name=self.function.name,
            maximum_retry_attempts=RETRIES,
            destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
                on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                    destination=args.topic_arn
                )
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        # One permission per alarm, by its ARN (known from its name before it exists), for this account only.
        self.permissions = [
            aws.lambda_.Permission(
                f"{name}-from-{suffix}",
                action="lambda:InvokeFunction",
                function=self.function.name,
                principal=ALARMS_PRINCIPAL,
                source_account=account,
                source_arn=arn,
                opts=child,
            )
            for suffix, arn in args.alarm_arns.items()
        ]
        self.register_outputs({"function_arn": self.function.arn})
