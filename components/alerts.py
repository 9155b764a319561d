"""Alerts: tell someone when the worker is down, crash-looping, short of memory or CPU, or runs wait.

Creates an SNS topic encrypted with AWS's `alias/aws/sns` key, or with the user's key when config `kmsKeyArn` is
set, an optional email subscription, the alert notifier (components/alert_notifier.py: CloudWatch alarms cannot
publish to an `alias/aws/sns` topic, so each alarm invokes it and its role publishes; the topic needs no key of its
own), and CloudWatch alarms:
- the worker service has no running task for 5 minutes;
- worker tasks stop unexpectedly (an EventBridge rule records each stop in a log group; alarms on
  the rule's metric and on OOM kills in that log turn a crash loop into one alert);
- memory above 90% for 10 minutes, CPU above 90% for 15 minutes;
- with an `ecs` pool, the observer's dead-letter queue has messages (when its name is given);
- with the stack controller's backlog metrics (controller/backlog.py): the pool's oldest Late (or handed-back) run
  is older than lateRunMinutes;
- the stack controller failed (Prefect unreachable, credential rejected, AWS throttling) in 3 of 5 minutes, or
  has not run at all for 15 minutes (Lambda's own Invocations metric, free).
The stack controller also publishes each of the pool's failed or crashed runs to the topic (controller/notify.py,
with `failed_run_notice_environment` and `alert_notifier.publish_statements`).
Needs the worker's cluster and service, and the controller's function and schedule names (known up front). Alarms
are named `<alarm_prefix>-<suffix>`; the notifier may be invoked by exactly these alarms' ARNs, and the topic policy
lets principals of this account publish (each needing sns:Publish on the topic in its own IAM policy:
`alert_notifier.publish_statements`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.agent_roles import Statement, arn_context, policy_document
from components.alert_notifier import AlertNotifier, AlertNotifierArgs

# ECS publishes the service's CPU and memory utilization every minute, but only while the service has
# a RUNNING task: "If a cluster, service, or other resource has no running tasks, no metrics will be
# reported" (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/available-metrics.html).
# Missing datapoints are therefore the free signal that no worker runs; a running-task count would
# need Container Insights (billed per metric). A partial shortfall (1 of 2 tasks) shows up as the
# stopped-task alarm, since every missing task is one that stopped or failed to start.
ECS_NAMESPACE = "AWS/ECS"
NOT_RUNNING_MINUTES = 5
MEMORY_PERCENT, MEMORY_MINUTES = 90, 10
CPU_PERCENT, CPU_MINUTES = 90, 15
# A task that stops unexpectedly makes ECS start a replacement, which may stop again: a crash loop.
# ECS slows the restarts of a failing service down (to minutes apart), so the stop alarms look at the
# last 30 minutes in 5-minute periods and fire on one stop among them: one notification when the loop
# starts, the alarm stays in ALARM while stops keep coming, and returns to OK after 30 quiet minutes.
STOP_PERIOD_SECONDS, STOP_WINDOW_PERIODS = 300, 6
# Stops that are not a deployment's or a scale-in's normal stop (those are ServiceSchedulerInitiated
# with a reason like "Scaling activity initiated by (deployment ...)" and the worker's exit 0):
# - EssentialContainerExited: the worker exited by itself (bad key, crash, OOM kill);
# - TaskFailedToStart: image pull, secret or network failure before the worker ran;
# - "Task failed container health checks": the worker stopped polling and ECS replaced it.
# Only top-level `detail` fields are matched, which moto's pattern matcher (the tests') evaluates as
# EventBridge does; the container's exit code and reason sit in the `containers` list, so they are
# written to the log line below (and OOM kills counted from it) rather than filtered on. A
# deployment's stop of a worker that ignored SIGTERM (SIGKILL after stopTimeout, exit 137) is
# therefore not reported.
UNEXPECTED_STOP_CODES = ["EssentialContainerExited", "TaskFailedToStart"]
FAILED_HEALTH_CHECK_PREFIX = "Task failed"
# ECS's container `reason` for an out-of-memory kill: "OutOfMemoryError: Container killed due to
# memory usage" (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stopped-task-error-codes.html).
OOM_REASON = "OutOfMemoryError"
# The controller runs every minute: failing in 3 of 5 minutes is a fault that lasts (one throttled or timed-out
# minute is not), and it is caught within 5 minutes.
CONTROLLER_ERROR_MINUTES = (3, 5)
# Not run at all (schedule disabled, function deleted, throttled) for this long: 15 one-minute periods with no
# Invocations datapoint, so a late or skipped schedule, or a metric's arrival lag, is no alarm. Lambda records
# Invocations for every run, failed ones included, and none for a throttled request (Lambda developer guide, "Types
# of metrics for Lambda functions"); failures are controller-errors' to report.
CONTROLLER_SILENT_MINUTES = 15
# What a topic encrypted without a key of the stack's own uses: free, and usable by the notifier's role.
AWS_MANAGED_SNS_KEY = "alias/aws/sns"
OOM_METRIC = "WorkerOomKills"  # counted from the stopped-task log, in the namespace `alarm_prefix`
# A CloudWatch Logs target takes only an input of the form {"timestamp": <time>, "message": <string>}
# (aws-cdk's aws-events-targets/lib/log-group.ts, CloudWatchLogGroup.validateInputTemplate, citing
# PutTargets); EventBridge fills a quoted <variable> in as escaped text.
STOP_LOG_PATHS = {
    "time": "$.time",
    "task": "$.detail.taskArn",
    "stopCode": "$.detail.stopCode",
    "stoppedReason": "$.detail.stoppedReason",
    "exitCode": "$.detail.containers[0].exitCode",
    "containerReason": "$.detail.containers[0].reason",
}
STOP_LOG_TEMPLATE = json.dumps(
    {
        "timestamp": "<time>",
        "message": "Worker task <task> stopped unexpectedly: <stopCode> (<stoppedReason>); "
        "container exit code <exitCode>, reason: <containerReason>",
    }
)


@dataclass(frozen=True, kw_only=True)
class AlertsArgs:
    """What the alarms watch, and where they send."""

    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    service_name: pulumi.Input[str]
    desired_count: int  # workers always on; 0 (paused, or scaled to zero when idle): no "not running" alarm
    log_retention_days: int  # for the log of stopped tasks
    alarm_prefix: str  # unique per stack; every alarm's name starts with it
    alert_email: str | None = None  # subscribed to the topic; the recipient must confirm
    dead_letter_queue_name: pulumi.Input[str] | None = None  # the `ecs` observer's DLQ (EcsTaskEvents)
    # The user's key (config kmsKeyArn) for the topic and the log groups; without it AWS-managed encryption.
    kms_key_arn: str | None = None
    controller_function_name: pulumi.Input[str] | None = None  # the stack controller (stack_controller.py)
    backlog: BacklogAlarms | None = None  # the controller's backlog metrics


@dataclass(frozen=True, kw_only=True)
class BacklogAlarms:
    """Where the stack controller publishes the pool's backlog (controller/backlog.py), and when a Late run
    is late enough to wake someone."""

    namespace: str
    work_pool: str
    late_run_minutes: int


@dataclass(frozen=True, kw_only=True)
class AlarmSpec:
    """One CloudWatch alarm on one metric: what it watches, when it fires, and what to do then."""

    suffix: str
    description: pulumi.Input[str]
    namespace: str
    metric_name: str
    dimensions: pulumi.Input[dict[str, pulumi.Input[str]]]
    statistic: str
    comparison: str
    threshold: float
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing_data: str = "notBreaching"


def failed_run_notice_environment(
    *, topic_arn: pulumi.Input[str], alarm_prefix: str, worker_log_group: pulumi.Input[str]
) -> dict[str, pulumi.Input[str]]:
    """What controller/notify.py reads (NoticeSettings.from_environ): the topic, the stack's name as the alarms'
    prefix (the notices' Subject), and the worker's log group (a crashed run's log command)."""
    return {"ALERT_TOPIC_ARN": topic_arn, "ALERT_PREFIX": alarm_prefix, "WORKER_LOG_GROUP": worker_log_group}


def stopped_tasks_log_name(alarm_prefix: str) -> str:
    return f"/aws/events/{alarm_prefix}/stopped-tasks"


def alarm_arn(partition: str, region: str, account_id: str, name: str) -> str:
    """An alarm's ARN as CloudWatch forms it, known before the alarm exists."""
    return f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:{name}"


def alarm_specs(args: AlertsArgs, rule_name: pulumi.Input[str]) -> list[AlarmSpec]:
    """Every alarm of the stack, in the order docs/alerts.md lists them."""
    service = {"ClusterName": args.cluster_name, "ServiceName": args.service_name}
    describe_service = pulumi.Output.format(
        "aws ecs describe-services --cluster {0} --services {1} --query 'services[0].events[:5]'",
        args.cluster_name,
        args.service_name,
    )
    stops_log = stopped_tasks_log_name(args.alarm_prefix)
    specs = []
    if args.desired_count > 0:
        specs.append(
            AlarmSpec(
                suffix="worker-not-running",
                description=pulumi.Output.concat(
                    "No worker task has run for 5 minutes (ECS reported no CPU datapoint), so no flow run "
                    "starts. Check why ECS cannot keep one running: ",
                    describe_service,
                ),
                namespace=ECS_NAMESPACE,
                metric_name="CPUUtilization",
                dimensions=service,
                statistic="SampleCount",
                comparison="LessThanThreshold",
                threshold=1,
                period=60,
                evaluation_periods=NOT_RUNNING_MINUTES,
                datapoints_to_alarm=NOT_RUNNING_MINUTES,
                treat_missing_data="breaching",
            )
        )
    specs += [
        AlarmSpec(
            suffix="worker-tasks-stopping",
            description=(
                "A worker task stopped unexpectedly (exited, failed to start or failed its health check) in "
                f"the last 30 minutes; one alert per crash loop. Read why: aws logs tail {stops_log} --since 1h "
                "(stop code, exit code and reason of each stop), then the worker's own log."
            ),
            namespace="AWS/Events",
            metric_name="TriggeredRules",
            dimensions={"RuleName": rule_name},
            statistic="Sum",
            comparison="GreaterThanOrEqualToThreshold",
            threshold=1,
            period=STOP_PERIOD_SECONDS,
            evaluation_periods=STOP_WINDOW_PERIODS,
            datapoints_to_alarm=1,
        ),
        AlarmSpec(
            suffix="worker-out-of-memory",
            description=(
                "A worker task was killed for running out of memory (OutOfMemoryError) in the last 30 minutes; "
                "its flow runs died with it. Raise `memory` (pulumi config set prefect-fargate:memory ...) "
                "or run fewer flows at once."
            ),
            namespace=args.alarm_prefix,
            metric_name=OOM_METRIC,
            dimensions={},
            statistic="Sum",
            comparison="GreaterThanOrEqualToThreshold",
            threshold=1,
            period=STOP_PERIOD_SECONDS,
            evaluation_periods=STOP_WINDOW_PERIODS,
            datapoints_to_alarm=1,
        ),
        # Maximum: the busiest task is the one that gets killed (memory) or queues its runs (CPU).
        AlarmSpec(
            suffix="worker-memory-high",
            description=(
                f"A worker task has used more than {MEMORY_PERCENT}% of its memory for {MEMORY_MINUTES} minutes; "
                "a process worker's flow runs share it, and at 100% ECS kills the task and its runs. "
                "Raise `memory`, or find the heavy flow run in the worker's log."
            ),
            namespace=ECS_NAMESPACE,
            metric_name="MemoryUtilization",
            dimensions=service,
            statistic="Maximum",
            comparison="GreaterThanThreshold",
            threshold=MEMORY_PERCENT,
            period=60,
            evaluation_periods=MEMORY_MINUTES,
            datapoints_to_alarm=MEMORY_MINUTES,
        ),
        AlarmSpec(
            suffix="worker-cpu-high",
            description=(
                f"A worker task has used more than {CPU_PERCENT}% of its CPU for {CPU_MINUTES} minutes; flow "
                "runs are slowed down or queueing. Raise `cpu`, or use workPoolType ecs for heavy flows."
            ),
            namespace=ECS_NAMESPACE,
            metric_name="CPUUtilization",
            dimensions=service,
            statistic="Maximum",
            comparison="GreaterThanThreshold",
            threshold=CPU_PERCENT,
            period=60,
            evaluation_periods=CPU_MINUTES,
            datapoints_to_alarm=CPU_MINUTES,
        ),
    ]
    if args.dead_letter_queue_name is not None:
        specs.append(
            AlarmSpec(
                suffix="observer-dead-letters",
                description=pulumi.Output.concat(
                    "The ECS observer's dead-letter queue has messages: task state events it could not "
                    "process, so some flow runs may keep a wrong state. Read them: aws sqs receive-message "
                    "--queue-url $(aws sqs get-queue-url --queue-name ",
                    args.dead_letter_queue_name,
                    " --query QueueUrl --output text)",
                ),
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": args.dead_letter_queue_name},
                statistic="Maximum",
                comparison="GreaterThanThreshold",
                threshold=0,
                period=300,
                evaluation_periods=1,
                datapoints_to_alarm=1,
            )
        )
    if args.backlog is not None:
        specs += backlog_alarm_specs(args.backlog)
    if args.controller_function_name is not None:
        function = {"FunctionName": args.controller_function_name}
        specs += [
            AlarmSpec(
                suffix="controller-errors",
                description=pulumi.Output.concat(
                    "The stack controller failed in 3 of the last 5 minutes (Prefect unreachable, credential "
                    "rejected, AWS throttling): runs whose worker died are not recovered meanwhile (none is lost: "
                    "it acts on the next good run). Read why: aws logs tail /aws/lambda/",
                    args.controller_function_name,
                    " --since 1h",
                ),
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions=function,
                statistic="Sum",
                comparison="GreaterThanOrEqualToThreshold",
                threshold=1,
                period=60,
                evaluation_periods=CONTROLLER_ERROR_MINUTES[1],
                datapoints_to_alarm=CONTROLLER_ERROR_MINUTES[0],
            ),
            AlarmSpec(
                suffix="controller-not-running",
                description=pulumi.Output.concat(
                    f"The stack controller has not run for {CONTROLLER_SILENT_MINUTES} minutes (Lambda recorded no "
                    "invocation): runs whose worker died are not recovered, and a scaled service's worker count "
                    "stays where it is (scaling never acts on missing data). Check that its schedule is enabled: aws "
                    "events describe-rule --name ",
                    args.controller_function_name,  # its every-minute rule has the function's name
                    " --query State; and whether Lambda throttles it: aws lambda get-function-concurrency "
                    "--function-name ",
                    args.controller_function_name,
                ),
                namespace="AWS/Lambda",
                metric_name="Invocations",
                dimensions=function,
                statistic="Sum",
                comparison="LessThanThreshold",
                threshold=1,
                period=60,
                evaluation_periods=CONTROLLER_SILENT_MINUTES,
                datapoints_to_alarm=CONTROLLER_SILENT_MINUTES,
                treat_missing_data="breaching",
            ),
        ]
    return specs


def backlog_alarm_specs(backlog: BacklogAlarms) -> list[AlarmSpec]:
    """A Late run older than lateRunMinutes: the one signal a team needs at 3 am."""
    return [
        AlarmSpec(
            suffix="late-runs",
            description=(
                f"A flow run of pool {backlog.work_pool} has been Late (due, not started) for more than "
                f"{backlog.late_run_minutes} minutes. Check that a worker runs and polls (the dashboard's "
                f"Workers widget; aws ecs describe-services), then: prefect flow-run ls --state Late"
            ),
            namespace=backlog.namespace,
            metric_name="OldestLateRunAge",
            dimensions={"WorkPool": backlog.work_pool},
            statistic="Maximum",
            comparison="GreaterThanThreshold",
            threshold=backlog.late_run_minutes * 60,
            period=60,
            evaluation_periods=1,
            datapoints_to_alarm=1,
        ),
    ]


def stopped_task_pattern(cluster_arn: str, service_name: str) -> dict[str, Any]:
    """EventBridge pattern: a task of this service in this cluster stopped, not as a deployment stops it."""
    return {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {
            "clusterArn": [cluster_arn],
            "group": [f"service:{service_name}"],
            "lastStatus": ["STOPPED"],
            "$or": [
                {"stopCode": UNEXPECTED_STOP_CODES},
                {"stoppedReason": [{"prefix": FAILED_HEALTH_CHECK_PREFIX}]},
            ],
        },
    }


def topic_policy(
    topic_arn: pulumi.Input[str], account_id: pulumi.Input[str], partition: pulumi.Input[str]
) -> pulumi.Output[str]:
    """Principals of this account may publish, each as its own IAM policy allows (the notifier's and the stack
    controller's roles: `publish_statements`); no AWS service and no other account. Nothing publishes on its own
    behalf since the alarms invoke the notifier instead."""
    statement: Statement = {
        "Sid": "ThisAccountsPublishers",
        "Effect": "Allow",
        "Principal": {"AWS": pulumi.Output.format("arn:{0}:iam::{1}:root", partition, account_id)},
        "Action": "sns:Publish",
        "Resource": topic_arn,
    }
    return policy_document(statement)


class Alerts(pulumi.ComponentResource):
    """The stack's alert topic and the alarms that publish to it."""

    topic: aws.sns.Topic
    """Where every alarm sends; subscribe more endpoints to it as needed."""
    alarms: dict[str, aws.cloudwatch.MetricAlarm]
    """The alarms by name suffix (`worker-not-running`, `worker-tasks-stopping`, ...)."""
    stopped_tasks_rule: aws.cloudwatch.EventRule
    """The EventBridge rule matching this service's unexpected task stops."""
    stopped_tasks_log: aws.cloudwatch.LogGroup
    """One line per unexpected stop, with the stop code and the container's exit code and reason."""
    notifier: AlertNotifier
    """What every alarm invokes: it publishes the alarm's change to the topic."""

    def __init__(self, name: str, args: AlertsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:alerts:Alerts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account_id, partition, region = arn_context(self)

        self.topic = aws.sns.Topic(
            f"{name}-topic", kms_master_key_id=args.kms_key_arn or AWS_MANAGED_SNS_KEY, opts=child
        )
        if args.alert_email:
            aws.sns.TopicSubscription(
                f"{name}-email", topic=self.topic.arn, protocol="email", endpoint=args.alert_email, opts=child
            )

        self.stopped_tasks_log = aws.cloudwatch.LogGroup(
            f"{name}-stopped-tasks",
            name=stopped_tasks_log_name(args.alarm_prefix),
            retention_in_days=args.log_retention_days,
            kms_key_id=args.kms_key_arn,
            opts=child,
        )
        # EventBridge writes to a CloudWatch Logs target under the log group's resource policy, not a
        # role (EventBridge user guide, "Using resource-based policies", CloudWatch Logs permissions).
        # Scoped to the log group with `resource_arn` (PutResourcePolicy's resourceArn: a log group ARN,
        # without `:*`): a policy without one is account-level, and a region holds at most 10 of those,
        # shared with Route 53, OpenSearch and others (PutResourcePolicy API reference). The provider
        # takes `policy_name` or `resource_arn`, not both.
        aws.cloudwatch.LogResourcePolicy(
            f"{name}-events-to-logs",
            resource_arn=self.stopped_tasks_log.arn,
            policy_document=policy_document(
                {
                    "Sid": "EventBridgeWritesStoppedTasks",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": pulumi.Output.concat(self.stopped_tasks_log.arn, ":*"),
                }
            ),
            opts=child,
        )
        self.stopped_tasks_rule = aws.cloudwatch.EventRule(
            f"{name}-stopped-tasks",
            description="Worker tasks of this stack that stopped unexpectedly (not a deployment's stop)",
            event_pattern=pulumi.Output.all(args.cluster_arn, args.service_name).apply(
                lambda v: json.dumps(stopped_task_pattern(v[0], v[1]))
            ),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-stopped-tasks",
            rule=self.stopped_tasks_rule.name,
            arn=self.stopped_tasks_log.arn,
            input_transformer=aws.cloudwatch.EventTargetInputTransformerArgs(
                input_paths=STOP_LOG_PATHS, input_template=STOP_LOG_TEMPLATE
            ),
            opts=child,
        )
        aws.cloudwatch.LogMetricFilter(
            f"{name}-oom-kills",
            log_group_name=self.stopped_tasks_log.name,
            pattern=f'"{OOM_REASON}"',
            metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                name=OOM_METRIC, namespace=args.alarm_prefix, value="1"
            ),
            opts=child,
        )

        specs = alarm_specs(args, self.stopped_tasks_rule.name)
        self.notifier = AlertNotifier(
            f"{name}-notifier",
            AlertNotifierArgs(
                topic_arn=self.topic.arn,
                alarm_arns={
                    spec.suffix: pulumi.Output.all(partition, region, account_id).apply(
                        lambda v, suffix=spec.suffix: alarm_arn(*v, f"{args.alarm_prefix}-{suffix}")
                    )
                    for spec in specs
                },
                log_retention_days=args.log_retention_days,
                kms_key_arn=args.kms_key_arn,
            ),
            opts=child,
        )
        # Each alarm after its permission to invoke the notifier, so that even its first change (OK, once created)
        # is sent: CloudWatch drops an invocation it is not authorized to make.
        self.alarms = {
            spec.suffix: aws.cloudwatch.MetricAlarm(
                f"{name}-{spec.suffix}",
                name=f"{args.alarm_prefix}-{spec.suffix}",
                alarm_description=spec.description,
                namespace=spec.namespace,
                metric_name=spec.metric_name,
                dimensions=spec.dimensions,
                statistic=spec.statistic,
                comparison_operator=spec.comparison,
                threshold=spec.threshold,
                period=spec.period,
                evaluation_periods=spec.evaluation_periods,
                datapoints_to_alarm=spec.datapoints_to_alarm,
                treat_missing_data=spec.treat_missing_data,
                alarm_actions=[self.notifier.function.arn],
                ok_actions=[self.notifier.function.arn],
                opts=pulumi.ResourceOptions(parent=self, depends_on=self.notifier.permissions),
            )
            for spec in specs
        }
        aws.sns.TopicPolicy(
            f"{name}-topic-policy",
            arn=self.topic.arn,
            policy=topic_policy(self.topic.arn, account_id, partition),
            opts=child,
        )
        self.register_outputs({"topic_arn": self.topic.arn})
