"""StackController: the stack's controller, an AWS Lambda function run every minute (code in controller/).

Creates the function (python3.13, zipped by Pulumi from controller/'s modules: no Docker, no Prefect package,
only the standard library and the runtime's boto3), its role, its log group (the stack's retention), an
EventBridge rule that invokes it every minute (named as the function, so that the alarms can name both before
either exists), and its asynchronous-invocation settings (no retries, no late events). Its jobs
(controller/handler.py) publish the pool's backlog (controller/backlog.py), recover this pool's runs whose worker
or task is gone (controller/recovery.py) and, with the stack's alert topic, publish each of the pool's runs that
ends FAILED or CRASHED to it (controller/notify.py); jobs add their settings through `environment` and their
permissions through `extra_policy_statements`. Its errors alarm on the stack's alert topic (components/alerts.py,
`controller-errors`).

The role reads exactly the stack's credential secret, describes exactly this cluster's tasks (an `ecs` pool's
flow-run tasks, or a `process` pool's worker tasks, which name the runs they hold), writes its own log group, and
(config controllerInVpc) manages the function's network interfaces in the stack's subnets; nothing else. Needs the
credential secret, the cluster and the pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.agent_roles import Statement, arn_context, policy_document
from components.kms import decrypt_through

CONTROLLER_DIR = Path(__file__).resolve().parent.parent / "controller"
# What the controller shares with the alert notifier: how a message is put on the alert topic (controller/notify.py).
SHARED_MODULES = ("alert_notifier/__init__.py", "alert_notifier/topic.py")
RUNTIME = "python3.13"  # its image carries boto3 (the controller's only dependency beyond the standard library)
HANDLER = "controller.handler.handler"
MEMORY_MB = 128  # the smallest Lambda size: a few HTTP calls a minute
TIMEOUT_SECONDS = 50  # under the 1-minute schedule, so two runs never overlap for long
SCHEDULE = "rate(1 minute)"
# EventBridge invokes the function asynchronously, and Lambda retries a failed asynchronous invocation twice
# (about 1 and 2 minutes later) and keeps an event it could not yet run for up to 6 hours, unless the function's
# event invoke config says otherwise (Lambda developer guide, "Configuring error handling for asynchronous
# invocation"; PutFunctionEventInvokeConfig: retries 0 to 2, age 60 to 21,600 s). With a new run every minute,
# a retry only repeats a minute the schedule covers anyway, and during an outage it would put up to three
# controllers at work at once: no retry, and an event not started within a minute is dropped (the next one is
# due). No reserved concurrency: a new account's concurrency limit may be 10, below which nothing can be
# reserved, and `pulumi up` would fail.
INVOKE_RETRIES = 0
INVOKE_MAX_EVENT_AGE_SECONDS = 60
# EventBridge's own delivery to the function has a retry policy too: when Lambda does not take an invocation
# (throttling, a service error), EventBridge tries again for up to 24 hours and 185 times by default (EventBridge
# user guide, "Event retry policy and using dead-letter queues"). The same rule applies: a minute's event that
# could not be delivered within the minute is dropped, never delivered late beside a newer one.
TARGET_RETRIES = 0
TARGET_MAX_EVENT_AGE_SECONDS = 60  # PutTargets' RetryPolicy: 60 to 86,400 s
# A process pool's RUNNING run whose worker task still runs counts as silent after this many heartbeats missed
# (components/agent_service.py's FLOW_HEARTBEAT_SECONDS apart), and then only while other runs of the pool were
# heard (controller/recovery.py): five, so one late event, one slow beat or a few dropped ones are no death.
MISSED_HEARTBEATS = 5


def package_assets(directory: Path) -> dict[str, pulumi.FileAsset]:
    """A package's Python modules under its own name in a function's zip (no __pycache__, nothing else)."""
    return {f"{directory.name}/{path.name}": pulumi.FileAsset(str(path)) for path in sorted(directory.glob("*.py"))}


def controller_archive() -> pulumi.AssetArchive:
    """controller/'s Python modules, and the SHARED_MODULES."""
    root = CONTROLLER_DIR.parent
    shared = {module: pulumi.FileAsset(str(root / module)) for module in SHARED_MODULES}
    return pulumi.AssetArchive({**package_assets(CONTROLLER_DIR), **shared})


def function_name(stack: str, role: str = "controller") -> str:
    """Named up front so the role's log statement and the alarms can name it (the controller's schedule rule has the
    same name); at most 64 characters, as Lambda and EventBridge both allow. `role` names another of the stack's
    functions (the alert notifier, components/alert_notifier.py)."""
    return f"prefect-fargate-{stack}-{role}"[-64:].lstrip("-")


@dataclass(frozen=True, kw_only=True)
class ControllerVpc:
    """Run the function in these subnets (config controllerInVpc): for an API reachable only from the VPC."""

    subnet_ids: pulumi.Input[list[str]]
    security_group_ids: pulumi.Input[list[str]]


@dataclass(frozen=True, kw_only=True)
class StackControllerArgs:
    """What the controller watches and how to reach it; `environment` and `extra_policy_statements` let other
    jobs add their settings and permissions."""

    prefect_api_url: str
    credential_secret_arn: pulumi.Input[str] | None  # None: a server without authentication
    credential_env: str  # PREFECT_API_KEY or PREFECT_API_AUTH_STRING
    pool_name: str
    pool_type: str  # process or ecs
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    heartbeat_seconds: int  # how often the stack's flow runs beat
    stuck_after: timedelta  # config stuckRunMinutes
    log_retention_days: int
    retry_crashed_runs: bool = True  # config retryCrashedRuns: re-run runs crashed by infrastructure
    kms_key_arn: str | None = None  # the user's key (config kmsKeyArn) on the secret and the log group
    vpc: ControllerVpc | None = None
    environment: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    extra_policy_statements: list[Statement] = field(default_factory=list)


def lambda_trust() -> str:
    return policy_document(
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    )


def own_logs_statement(log_group_arn: pulumi.Input[str]) -> Statement:
    """What Lambda needs from a function's role to ship its logs to the function's own log group."""
    return {
        "Sid": "OwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": pulumi.Output.concat(log_group_arn, ":log-stream:*"),
    }


def function_logs_and_role(
    parent: pulumi.Resource, name: str, fn_name: str, retention_days: int, kms_key_arn: str | None
) -> tuple[aws.cloudwatch.LogGroup, aws.iam.Role]:
    """A stack function's log group (`/aws/lambda/<function>`, the stack's retention, the user's key if any) and its
    execution role, as children `<name>-logs` and `<name>-role` of `parent` (the controller, the alert notifier)."""
    child = pulumi.ResourceOptions(parent=parent)
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-logs",
        name=f"/aws/lambda/{fn_name}",
        retention_in_days=retention_days,
        kms_key_id=kms_key_arn,
        opts=child,
    )
    return log_group, aws.iam.Role(f"{name}-role", assume_role_policy=lambda_trust(), opts=child)


def controller_statements(
    args: StackControllerArgs, log_group_arn: pulumi.Input[str], partition: pulumi.Input[str],
    region: pulumi.Input[str], account: pulumi.Input[str],
) -> list[Statement]:  # fmt: skip
    """The role's statements, each on the narrowest resource AWS accepts."""
    statements: list[Statement] = [
        own_logs_statement(log_group_arn),
        {  # an ecs pool's flow-run tasks (infrastructure_pid), a process pool's worker tasks (each run's label)
            "Sid": "ThisClustersTasks",
            "Effect": "Allow",
            "Action": "ecs:DescribeTasks",
            "Resource": pulumi.Output.format(
                "arn:{0}:ecs:{1}:{2}:task/{3}/*", partition, region, account, args.cluster_name
            ),
            "Condition": {"ArnEquals": {"ecs:cluster": args.cluster_arn}},
        },
    ]
    if args.credential_secret_arn is not None:
        statements.append(
            {
                "Sid": "Credential",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": args.credential_secret_arn,
            }
        )
    if args.vpc is not None:
        ec2 = pulumi.Output.format("arn:{0}:ec2:{1}:{2}", partition, region, account)
        enis = pulumi.Output.format("{0}:network-interface/*", ec2)
        # What Lambda does with the function's role to attach it to the subnets ("Giving Lambda functions access
        # to resources in an Amazon VPC", execution role permissions): interfaces in exactly these subnets and
        # groups. DescribeNetworkInterfaces takes no resource.
        attach_to = pulumi.Output.all(ec2, args.vpc.subnet_ids, args.vpc.security_group_ids).apply(
            lambda v: [f"{v[0]}:subnet/{s}" for s in v[1]] + [f"{v[0]}:security-group/{g}" for g in v[2]]
        )
        statements += [
            {"Sid": "DescribeEnis", "Effect": "Allow", "Action": "ec2:DescribeNetworkInterfaces", "Resource": "*"},
            {
                "Sid": "CreateEnis",
                "Effect": "Allow",
                "Action": "ec2:CreateNetworkInterface",
                "Resource": pulumi.Output.all(enis, attach_to).apply(lambda v: [v[0], *v[1]]),
            },
            {
                "Sid": "ManageEnis",
                "Effect": "Allow",
                "Action": [
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                "Resource": enis,
            },
        ]
    statements += args.extra_policy_statements
    return statements


class StackController(pulumi.ComponentResource):
    """The controller function, its role, log group and every-minute schedule."""

    function: aws.lambda_.Function
    """The controller function; its `Errors` metric is what the controller-errors alarm watches."""
    role: aws.iam.Role
    """The function's execution role."""
    log_group: aws.cloudwatch.LogGroup
    """`/aws/lambda/<function>`, with the stack's retention."""
    invoke_config: aws.lambda_.FunctionEventInvokeConfig
    """No retry of a failed minute, no event run later than a minute: one controller at a time."""
    schedule: aws.cloudwatch.EventRule
    """Invokes the function every minute."""

    def __init__(self, name: str, args: StackControllerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:controller:StackController", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account, partition, region = arn_context(self)
        fn_name = function_name(pulumi.get_stack())

        self.log_group, self.role = function_logs_and_role(
            self, name, fn_name, args.log_retention_days, args.kms_key_arn
        )
        credential_key = (  # the user's key on the secret (config kmsKeyArn), read through Secrets Manager only
            decrypt_through(self, "CredentialKey", args.kms_key_arn, "secretsmanager")
            if args.credential_secret_arn is not None
            else []
        )
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=policy_document(
                *controller_statements(args, self.log_group.arn, partition, region, account),
                *credential_key,
            ),
            opts=child,
        )
        environment: dict[str, pulumi.Input[str]] = {
            "PREFECT_API_URL": args.prefect_api_url,
            "PREFECT_CREDENTIAL_ENV": args.credential_env,
            "WORK_POOL": args.pool_name,
            "WORK_POOL_TYPE": args.pool_type,
            "CLUSTER_ARN": args.cluster_arn,
            "SILENCE_SECONDS": str(MISSED_HEARTBEATS * args.heartbeat_seconds),
            "STUCK_SECONDS": str(int(args.stuck_after.total_seconds())),
            "RETRY_CRASHED_RUNS": str(args.retry_crashed_runs).lower(),
            **({"PREFECT_CREDENTIAL_SECRET_ARN": args.credential_secret_arn} if args.credential_secret_arn else {}),
            **args.environment,
        }
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=fn_name,
            description="prefect-fargate stack controller: the pool's backlog, runs whose worker is gone, failed runs",
            runtime=RUNTIME,
            handler=HANDLER,
            code=controller_archive(),
            role=self.role.arn,
            memory_size=MEMORY_MB,
            timeout=TIMEOUT_SECONDS,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=environment),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=self.log_group.name),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=args.vpc.subnet_ids, security_group_ids=args.vpc.security_group_ids
            )
            if args.vpc is not None
            else None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, self.log_group]),
        )
        self.invoke_config = aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-invoke-config",
            function_name=self.function.name,  # no qualifier: the unqualified function the schedule invokes
            maximum_retry_attempts=INVOKE_RETRIES,
            maximum_event_age_in_seconds=INVOKE_MAX_EVENT_AGE_SECONDS,
            opts=child,
        )
        self.schedule = aws.cloudwatch.EventRule(
            f"{name}-schedule",
            name=fn_name,  # what the controller-not-running alarm tells to check, known before the rule exists
            description="Runs the prefect-fargate stack controller every minute",
            schedule_expression=SCHEDULE,
            opts=child,
        )
        permission = aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=self.function.name,
            principal="events.amazonaws.com",
            source_arn=self.schedule.arn,
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-target",
            rule=self.schedule.name,
            arn=self.function.arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_retry_attempts=TARGET_RETRIES, maximum_event_age_in_seconds=TARGET_MAX_EVENT_AGE_SECONDS
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]),
        )
        self.register_outputs({"function_name": self.function.name, "log_group_name": self.log_group.name})
