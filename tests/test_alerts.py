"""Alerts: the config keys, every alarm's metric and action, and what AWS (moto) does with them.

The EventBridge pattern and the stopped-task log line are checked by moto itself: the rule and its
target are created in moto, ECS task state changes in the documented event format are put on the
default bus, and moto's own pattern matcher and input transformer decide what reaches the log group.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from conftest import (
    ACCOUNT,
    BASE_CONFIG,
    PROJECT,
    REGION,
    ROOT,
    STACK,
    RecordingMocks,
    Run,
    load_stack_config,
    put_metric_alarm_request,
    run_program,
    run_pulumi,
)

from components.alerts import Alerts, AlertsArgs
from components.config import ConfigError

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
LOG = "aws:cloudwatch/logGroup:LogGroup"
PREFIX = f"prefect-fargate-{STACK}"
OTHER_CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/someone-elses-cluster"
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"


@pytest.fixture(scope="module")
def run() -> Run:
    return run_program({**BASE_CONFIG, "alertEmail": "On-Call@Example.com"})


def alarms(run: Run) -> dict[str, dict[str, Any]]:
    """The stack's alarms by name suffix, inputs as CloudWatch gets them."""
    return {r.plain_inputs["name"].removeprefix(f"{PREFIX}-"): r.plain_inputs for r in run.of_type(ALARM)}


def topic_arn(run: Run) -> str:
    return run.one("aws:sns/topic:Topic").outputs["arn"]


def notifier_arn(run: Run) -> str:
    """What every alarm invokes (components/alert_notifier.py)."""
    return run.one("aws:lambda/function:Function", "notifier").outputs["arn"]


# -- config ------------------------------------------------------------------------------------------


def test_alarms_are_on_by_default_without_an_email() -> None:
    loaded = load_stack_config(BASE_CONFIG)
    assert (loaded.alarms, loaded.alert_email) == (True, None)


def test_alert_email_is_normalized() -> None:
    assert load_stack_config({**BASE_CONFIG, "alertEmail": "On-Call@Example.COM"}).alert_email == "On-Call@example.com"


@pytest.mark.parametrize(
    ("config", "key", "problem"),
    [
        ({"alertEmail": "oncall-at-example.com"}, "alertEmail", "is not an email address"),
        ({"alertEmail": "a@b@example.com"}, "alertEmail", "is not an email address"),
        ({"alertEmail": "oncall@example"}, "alertEmail", "is not an email address"),
        ({"alarms": "yes"}, "alarms", "is not a boolean"),
        ({"alarms": "false", "alertEmail": "oncall@example.com"}, "alertEmail", "alarms is false"),
    ],
    ids=["no-at", "two-ats", "no-domain-dot", "alarms-not-bool", "email-without-alarms"],
)
def test_bad_alert_config_fails_before_any_resource(config: dict[str, str], key: str, problem: str) -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program({**BASE_CONFIG, **config}, mocks=mocks)
    line = next(line for line in str(raised.value).splitlines() if f"{PROJECT}:{key}:" in line)
    assert problem in line
    assert "Allowed:" in line
    assert f"pulumi config set {PROJECT}:" in line
    assert mocks.resources == []


def test_pulumi_yaml_declares_the_alert_keys() -> None:
    declared = yaml.safe_load(Path(ROOT / "Pulumi.yaml").read_text())["config"]
    assert declared["alarms"] == {**declared["alarms"], "type": "boolean", "default": True}
    assert declared["alertEmail"]["default"] == ""
    assert load_stack_config({**BASE_CONFIG, "alarms": "true", "alertEmail": ""}).alert_email is None


# -- what the program registers ------------------------------------------------------------------------

# (suffix, namespace, metric, statistic, comparison, threshold, minutes the condition must hold)
EXPECTED_ALARMS = [
    ("worker-not-running", "AWS/ECS", "CPUUtilization", "SampleCount", "LessThanThreshold", 1, 5),
    ("worker-memory-high", "AWS/ECS", "MemoryUtilization", "Maximum", "GreaterThanThreshold", 90, 10),
    ("worker-cpu-high", "AWS/ECS", "CPUUtilization", "Maximum", "GreaterThanThreshold", 90, 15),
]


@pytest.mark.parametrize(
    ("suffix", "namespace", "metric", "statistic", "comparison", "threshold", "minutes"),
    EXPECTED_ALARMS,
    ids=[e[0] for e in EXPECTED_ALARMS],
)
def test_service_alarms_watch_this_service_for_the_stated_time(
    run: Run, suffix: str, namespace: str, metric: str, statistic: str, comparison: str, threshold: int, minutes: int
) -> None:
    alarm = alarms(run)[suffix]
    assert (alarm["namespace"], alarm["metricName"], alarm["statistic"]) == (namespace, metric, statistic)
    assert alarm["dimensions"] == {"ClusterName": run.outputs["clusterName"], "ServiceName": run.outputs["serviceName"]}
    assert (alarm["comparisonOperator"], alarm["threshold"]) == (comparison, threshold)
    # "for N minutes": N consecutive one-minute periods, every one of them breaching.
    assert alarm["period"] == 60
    assert alarm["evaluationPeriods"] == alarm["datapointsToAlarm"] == minutes


def test_no_running_task_is_missing_data_which_breaches(run: Run) -> None:
    """ECS sends no service metric while no task runs: only `breaching` turns that silence into an alarm."""
    assert alarms(run)["worker-not-running"]["treatMissingData"] == "breaching"
    for suffix in ("worker-memory-high", "worker-cpu-high", "worker-tasks-stopping", "worker-out-of-memory"):
        assert alarms(run)[suffix]["treatMissingData"] == "notBreaching", suffix


def test_every_alarm_notifies_through_the_notifier_and_says_what_to_do(run: Run) -> None:
    notifier = notifier_arn(run)
    assert set(alarms(run)) == {
        "worker-not-running", "worker-tasks-stopping", "worker-out-of-memory", "worker-memory-high", "worker-cpu-high",
        "late-runs", "controller-errors", "controller-not-running",
    }  # fmt: skip
    for suffix, alarm in alarms(run).items():
        assert alarm["alarmActions"] == [notifier], suffix
        assert alarm["okActions"] == [notifier], suffix
        assert len(alarm["alarmDescription"]) > 80, suffix
    assert (
        f"--cluster {run.outputs['clusterName']} --services {run.outputs['serviceName']}"
        in (alarms(run)["worker-not-running"]["alarmDescription"])
    )
    stops_log = run.one(LOG, "stopped-tasks").plain_inputs["name"]
    assert f"aws logs tail {stops_log}" in alarms(run)["worker-tasks-stopping"]["alarmDescription"]


def test_a_crash_loop_is_one_alert(run: Run) -> None:
    """The stop alarms count this rule's matches (and OOM lines of its log) over 30 minutes: the first stop
    fires, later stops keep the alarm in ALARM (no new notification), 30 quiet minutes end it."""
    rule = run.one("aws:cloudwatch/eventRule:EventRule", "stopped-tasks").outputs["name"]
    stopping = alarms(run)["worker-tasks-stopping"]
    assert (stopping["namespace"], stopping["metricName"], stopping["dimensions"]) == (
        "AWS/Events", "TriggeredRules", {"RuleName": rule},
    )  # fmt: skip
    metric_filter = run.one("aws:cloudwatch/logMetricFilter:LogMetricFilter").plain_inputs
    oom = alarms(run)["worker-out-of-memory"]
    assert (oom["namespace"], oom["metricName"]) == (
        metric_filter["metricTransformation"]["namespace"], metric_filter["metricTransformation"]["name"],
    )  # fmt: skip
    assert metric_filter["logGroupName"] == run.one(LOG, "stopped-tasks").outputs["name"]
    for alarm in (stopping, oom):
        assert (alarm["statistic"], alarm["comparisonOperator"], alarm["threshold"]) == (
            "Sum", "GreaterThanOrEqualToThreshold", 1,
        )  # fmt: skip
        assert alarm["datapointsToAlarm"] == 1
        assert alarm["period"] * alarm["evaluationPeriods"] == 30 * 60


def test_logs_resource_policy_is_the_log_groups_own(run: Run) -> None:
    """A policy without resourceArn is account-level: at most 10 per region, shared with other services,
    so around the tenth stack `pulumi up` would fail with LimitExceededException."""
    policy = run.one("aws:cloudwatch/logResourcePolicy:LogResourcePolicy").plain_inputs
    log_arn = run.one(LOG, "stopped-tasks").outputs["arn"]
    assert policy["resourceArn"] == log_arn
    assert "policyName" not in policy  # the provider takes one of the two: a name makes it account-level
    (statement,) = json.loads(policy["policyDocument"])["Statement"]
    assert statement["Resource"] == f"{log_arn}:*"  # the group's streams, nothing else


def test_topic_is_encrypted_with_awss_sns_key_and_the_stack_makes_no_key(run: Run) -> None:
    """No key of the stack's own ($1 a month): the alarms reach the topic through the notifier's role."""
    assert run.one("aws:sns/topic:Topic").plain_inputs["kmsMasterKeyId"] == "alias/aws/sns"
    assert run.of_type("aws:kms/key:Key") == []


def test_alert_email_subscribes_to_the_topic(run: Run) -> None:
    subscription = run.one("aws:sns/topicSubscription:TopicSubscription").plain_inputs
    assert subscription == {**subscription, "topic": topic_arn(run), "protocol": "email"}
    assert subscription["endpoint"] == "On-Call@example.com"
    assert run.outputs["alertTopicArn"] == topic_arn(run)


def test_alarms_false_creates_none_of_it() -> None:
    """Only the alerting goes: the controller (and its schedule and log) stays, it recovers runs."""
    off = run_program({**BASE_CONFIG, "alarms": "false"})
    alerting = ("aws:sns/", "aws:kms/", "aws:cloudwatch/metricAlarm", "aws:cloudwatch/event", "aws:cloudwatch/logM")
    assert sorted(r.name for r in off.resources if r.typ.startswith((*alerting, "aws:lambda/"))) == [
        "prefect-controller-function",
        "prefect-controller-invoke",
        "prefect-controller-invoke-config",
        "prefect-controller-schedule",
        "prefect-controller-target",
    ]
    functions = [r.name for r in off.of_type("aws:lambda/function:Function")]
    assert functions == ["prefect-controller-function"]  # no alert notifier
    assert sorted(r.name for r in off.of_type(LOG)) == ["prefect-controller-logs", "prefect-worker-logs"]
    assert "alertTopicArn" not in off.outputs
    # No topic, so the controller's failed-run notices are off (controller/notify.py): no setting, no permission.
    controller = off.one("aws:lambda/function:Function", "controller").plain_inputs["environment"]["variables"]
    assert not {"ALERT_TOPIC_ARN", "ALERT_PREFIX", "WORKER_LOG_GROUP"} & set(controller)
    policy = off.one("aws:iam/rolePolicy:RolePolicy", "controller").json_input("policy")
    assert "sns:" not in json.dumps(policy)


def test_a_paused_worker_has_no_not_running_alarm() -> None:
    paused = run_program({**BASE_CONFIG, "desiredCount": "0"})
    assert "worker-not-running" not in alarms(paused)
    assert "worker-memory-high" in alarms(paused)


def alerts_run(**overrides: Any) -> Run:
    """The component alone, as an `ecs` stack would wire it once the observer's queue exists."""
    args = AlertsArgs(
        cluster_name="workers",
        cluster_arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/workers",
        service_name="worker-svc",
        desired_count=1,
        log_retention_days=14,
        alarm_prefix=PREFIX,
        **overrides,
    )
    return run_pulumi(lambda: Alerts("alerts", args))


def test_dead_letter_queue_alarm_fires_on_one_message() -> None:
    run = alerts_run(dead_letter_queue_name="prefect-ecs-tasks-events-dlq")
    dlq = alarms(run)["observer-dead-letters"]
    assert (dlq["namespace"], dlq["metricName"], dlq["statistic"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum",
    )  # fmt: skip
    assert dlq["dimensions"] == {"QueueName": "prefect-ecs-tasks-events-dlq"}
    assert (dlq["comparisonOperator"], dlq["threshold"], dlq["evaluationPeriods"]) == ("GreaterThanThreshold", 0, 1)
    assert dlq["alarmActions"] == [notifier_arn(run)]
    assert "--queue-name prefect-ecs-tasks-events-dlq " in dlq["alarmDescription"]
    assert "observer-dead-letters" not in alarms(alerts_run())


def test_an_ecs_stack_watches_its_own_observer_dead_letter_queue() -> None:
    ecs = run_program({**BASE_CONFIG, "workPoolType": "ecs"})
    dlq = ecs.one("aws:sqs/queue:Queue", "dlq")
    assert alarms(ecs)["observer-dead-letters"]["dimensions"] == {"QueueName": dlq.outputs["name"]}
    assert "observer-dead-letters" not in alarms(run_program())  # a process stack has no observer


# -- what AWS does with it (moto) ------------------------------------------------------------------------


@pytest.fixture
def aws(aws_env: None) -> Iterator[dict[str, Any]]:
    yield {name: boto3.client(name) for name in ("sns", "cloudwatch", "logs", "events", "iam", "lambda", "sqs")}


def create_notifier_in_moto(run: Run, aws: dict[str, Any], topic: str) -> str:
    """The alert notifier as the run declares it: role, function (its zip), one permission per alarm, and the
    on-failure destination; returns the function's ARN. Lambda's own checks of these requests are moto's."""
    role = run.one("aws:iam/role:Role", "notifier").plain_inputs
    role_arn = aws["iam"].create_role(RoleName="notifier", AssumeRolePolicyDocument=role["assumeRolePolicy"])
    policy = run.one("aws:iam/rolePolicy:RolePolicy", "notifier").plain_inputs["policy"]
    aws["iam"].put_role_policy(
        RoleName="notifier", PolicyName="notifier", PolicyDocument=policy.replace(topic_arn(run), topic)
    )
    fn = run.one("aws:lambda/function:Function", "notifier").plain_inputs
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        for name, asset in fn["code"].assets.items():
            archive.write(asset.path, name)
    arn = aws["lambda"].create_function(
        FunctionName=fn["name"], Runtime=fn["runtime"], Handler=fn["handler"], Role=role_arn["Role"]["Arn"],
        Code={"ZipFile": zipped.getvalue()}, MemorySize=int(fn["memorySize"]), Timeout=int(fn["timeout"]),
        Environment={"Variables": {"ALERT_TOPIC_ARN": topic}},
    )["FunctionArn"]  # fmt: skip
    for permission in run.of_type("aws:lambda/permission:Permission"):
        p = permission.plain_inputs
        if p["function"] == fn["name"]:
            aws["lambda"].add_permission(
                FunctionName=fn["name"], StatementId=permission.name, Action=p["action"], Principal=p["principal"],
                SourceArn=p["sourceArn"], SourceAccount=p["sourceAccount"],
            )  # fmt: skip
    invoke = run.one("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig", "notifier").plain_inputs
    aws["lambda"].put_function_event_invoke_config(
        FunctionName=fn["name"],
        MaximumRetryAttempts=int(invoke["maximumRetryAttempts"]),
        DestinationConfig={"OnFailure": {"Destination": topic}},
    )
    return arn


def create_in_moto(run: Run, aws: dict[str, Any]) -> dict[str, Any]:
    """Every alerting resource of the run, created through boto3 (botocore checks each request's shape)."""
    kms_key = run.one("aws:sns/topic:Topic").plain_inputs["kmsMasterKeyId"]
    topic = aws["sns"].create_topic(Name="alerts", Attributes={"KmsMasterKeyId": kms_key})["TopicArn"]
    policy = run.one("aws:sns/topicPolicy:TopicPolicy").plain_inputs["policy"].replace(topic_arn(run), topic)
    aws["sns"].set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=policy)
    subscription = run.one("aws:sns/topicSubscription:TopicSubscription").plain_inputs
    aws["sns"].subscribe(TopicArn=topic, Protocol=subscription["protocol"], Endpoint=subscription["endpoint"])
    notifier = create_notifier_in_moto(run, aws, topic)

    log = run.one(LOG, "stopped-tasks").plain_inputs
    aws["logs"].create_log_group(logGroupName=log["name"])
    aws["logs"].put_retention_policy(logGroupName=log["name"], retentionInDays=int(log["retentionInDays"]))
    streams_arn = aws["logs"].describe_log_groups(logGroupNamePrefix=log["name"])["logGroups"][0]["arn"]
    log_arn = streams_arn.removesuffix(":*")
    resource_policy = run.one("aws:cloudwatch/logResourcePolicy:LogResourcePolicy").plain_inputs
    (statement,) = json.loads(resource_policy["policyDocument"])["Statement"]
    # EventBridge alone may write, and only to this log group's streams.
    assert (statement["Principal"], statement["Resource"]) == ({"Service": "events.amazonaws.com"}, streams_arn)
    # Scoped to the log group (botocore checks the request's shape; moto stores it but does not enforce it).
    assert resource_policy["resourceArn"] == run.one(LOG, "stopped-tasks").outputs["arn"]
    aws["logs"].put_resource_policy(resourceArn=log_arn, policyDocument=resource_policy["policyDocument"])
    metric_filter = run.one("aws:cloudwatch/logMetricFilter:LogMetricFilter").plain_inputs
    transformation = metric_filter["metricTransformation"]
    aws["logs"].put_metric_filter(
        logGroupName=log["name"],
        filterName="oom-kills",
        filterPattern=metric_filter["pattern"],
        metricTransformations=[{
            "metricName": transformation["name"],
            "metricNamespace": transformation["namespace"],
            "metricValue": transformation["value"],
        }],
    )  # fmt: skip

    rule = run.one("aws:cloudwatch/eventRule:EventRule", "stopped-tasks")
    aws["events"].put_rule(
        Name=rule.outputs["name"],
        EventPattern=rule.plain_inputs["eventPattern"],
        Description=rule.plain_inputs["description"],
    )
    target = run.one("aws:cloudwatch/eventTarget:EventTarget", "stopped-tasks").plain_inputs
    assert (target["rule"], target["arn"]) == (rule.outputs["name"], run.one(LOG, "stopped-tasks").outputs["arn"])
    transformer = target["inputTransformer"]
    paths, template = transformer["inputPaths"], transformer["inputTemplate"]
    failed = aws["events"].put_targets(
        Rule=rule.outputs["name"],
        Targets=[{
            "Id": "stopped-tasks-log",
            "Arn": log_arn,
            "InputTransformer": {"InputPathsMap": paths, "InputTemplate": template},
        }],
    )["FailedEntryCount"]  # fmt: skip
    assert failed == 0

    for alarm in run.of_type(ALARM):
        a = alarm.plain_inputs
        aws["cloudwatch"].put_metric_alarm(**put_metric_alarm_request(a, [notifier], ok_actions=[notifier]))
    return {
        "topic": topic, "policy": json.loads(policy), "log": log["name"], "oom_pattern": metric_filter["pattern"],
        "notifier": notifier,
    }  # fmt: skip


def ecs_task_stopped(
    cluster_arn: str,
    service_name: str,
    *,
    stop_code: str,
    stopped_reason: str,
    exit_code: int | None = None,
    reason: str | None = None,
    last_status: str = "STOPPED",
) -> dict[str, Any]:
    """A PutEvents entry carrying an ECS Task State Change as ECS sends it for a Fargate task (the sample in
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_task_events.html)."""
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster_arn.rsplit('/', 1)[1]}/6d6d4e2c9a1b4c3e8f0a1b2c3d4e5f60"
    container: dict[str, Any] = {
        "containerArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:container/{task.rsplit('/', 1)[1]}/0f1e2d3c",
        "lastStatus": last_status,
        "name": "prefect-worker",
        "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/agent@sha256:{'a' * 64}",
        "taskArn": task,
        "networkInterfaces": [{"attachmentId": "a1b2c3d4", "privateIpv4Address": "172.31.20.14"}],
        "cpu": "0",
    }
    if exit_code is not None:
        container["exitCode"] = exit_code
    if reason is not None:
        container["reason"] = reason
    detail = {
        "attachments": [{"id": "a1b2c3d4", "type": "eni", "status": "DELETED"}],
        "availabilityZone": f"{REGION}a",
        "clusterArn": cluster_arn,
        "containers": [container],
        "cpu": "512",
        "createdAt": "2026-11-28T02:00:01.120Z",
        "desiredStatus": "STOPPED",
        "group": f"service:{service_name}",
        "launchType": "FARGATE",
        "lastStatus": last_status,
        "memory": "1024",
        "platformVersion": "1.4.0",
        "startedBy": "ecs-svc/1234567890123456789",
        "stopCode": stop_code,
        "stoppedAt": "2026-11-28T02:41:06.432Z",
        "stoppedReason": stopped_reason,
        "taskArn": task,
        "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/prefect-worker:7",
        "version": 6,
    }
    return {
        "Source": "aws.ecs",
        "DetailType": "ECS Task State Change",
        "Resources": [task],
        "Detail": json.dumps(detail),
    }


DEPLOYMENT_STOP = {"stop_code": "ServiceSchedulerInitiated", "exit_code": 0,
                   "stopped_reason": "Scaling activity initiated by (deployment ecs-svc/1234567890)"}  # fmt: skip
OOM_KILL = {"stop_code": "EssentialContainerExited", "stopped_reason": "Essential container in task exited",
            "exit_code": 137, "reason": OOM_REASON}  # fmt: skip
UNEXPECTED = {
    "oom-kill": OOM_KILL,
    "worker-exited": {"stop_code": "EssentialContainerExited", "stopped_reason": "Essential container in task exited",
                      "exit_code": 1},
    "failed-to-start": {"stop_code": "TaskFailedToStart",
                        "stopped_reason": "ResourceInitializationError: unable to pull secrets or registry auth"},
    "health-check": {"stop_code": "ServiceSchedulerInitiated", "stopped_reason": "Task failed container health checks",
                     "exit_code": 0},
}  # fmt: skip


def stopped_lines(aws: dict[str, Any], log: str, pattern: str = "") -> list[str]:
    events = aws["logs"].filter_log_events(logGroupName=log, filterPattern=pattern)["events"]
    return [json.loads(e["message"])["message"] for e in events]


@pytest.mark.parametrize("case", list(UNEXPECTED))
def test_unexpected_stop_of_this_service_is_logged_by_eventbridge(run: Run, aws: dict[str, Any], case: str) -> None:
    created = create_in_moto(run, aws)
    cluster = run.one("aws:ecs/cluster:Cluster").outputs["arn"]
    entry = ecs_task_stopped(cluster, run.outputs["serviceName"], **UNEXPECTED[case])
    assert aws["events"].put_events(Entries=[entry])["FailedEntryCount"] == 0
    (line,) = stopped_lines(aws, created["log"])
    assert line.startswith("Worker task arn:aws:ecs:")
    assert UNEXPECTED[case]["stop_code"] in line and UNEXPECTED[case]["stopped_reason"] in line


def test_oom_kill_is_named_and_counted_apart(run: Run, aws: dict[str, Any]) -> None:
    created = create_in_moto(run, aws)
    cluster, service = run.one("aws:ecs/cluster:Cluster").outputs["arn"], run.outputs["serviceName"]
    entries = [ecs_task_stopped(cluster, service, **UNEXPECTED[case]) for case in ("oom-kill", "worker-exited")]
    aws["events"].put_events(Entries=entries)
    assert len(stopped_lines(aws, created["log"])) == 2
    (oom,) = stopped_lines(aws, created["log"], created["oom_pattern"])  # what the metric filter counts
    assert "container exit code 137, reason: OutOfMemoryError: Container killed due to memory usage" in oom


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(lambda cluster, service: ecs_task_stopped(cluster, service, **DEPLOYMENT_STOP), id="deployment"),
        pytest.param(lambda cluster, service: ecs_task_stopped(OTHER_CLUSTER, service, **OOM_KILL), id="other-cluster"),
        pytest.param(
            lambda cluster, service: ecs_task_stopped(cluster, "other-service", **OOM_KILL), id="other-service"
        ),
        pytest.param(
            lambda cluster, service: ecs_task_stopped(
                cluster, service, stop_code="", stopped_reason="", last_status="RUNNING"
            ),
            id="running",
        ),
    ],
)
def test_normal_stops_and_other_tasks_are_not_matched(run: Run, aws: dict[str, Any], entry: Any) -> None:
    created = create_in_moto(run, aws)
    cluster = run.one("aws:ecs/cluster:Cluster").outputs["arn"]
    assert aws["events"].put_events(Entries=[entry(cluster, run.outputs["serviceName"])])["FailedEntryCount"] == 0
    assert stopped_lines(aws, created["log"]) == []
    # The same log does get this stack's OOM kill: the silence above is the pattern's doing.
    aws["events"].put_events(Entries=[ecs_task_stopped(cluster, run.outputs["serviceName"], **OOM_KILL)])
    assert len(stopped_lines(aws, created["log"])) == 1


def test_topic_policy_lets_this_accounts_principals_publish_and_the_notifier_is_one(
    run: Run, aws: dict[str, Any]
) -> None:
    created = create_in_moto(run, aws)
    (statement,) = created["policy"]["Statement"]
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == (
        "Allow",
        "sns:Publish",
        created["topic"],
    )
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}  # no service, no other account
    stored = aws["sns"].get_topic_attributes(TopicArn=created["topic"])["Attributes"]
    assert json.loads(stored["Policy"]) == created["policy"]
    assert stored["KmsMasterKeyId"] == "alias/aws/sns"
    # The notifier's role may publish to exactly this topic.
    (role_policy,) = aws["iam"].list_role_policies(RoleName="notifier")["PolicyNames"]
    document = aws["iam"].get_role_policy(RoleName="notifier", PolicyName=role_policy)["PolicyDocument"]
    publish = [s for s in document["Statement"] if s["Action"] == "sns:Publish"]
    assert [s["Resource"] for s in publish] == [created["topic"]]


def test_exactly_this_stacks_alarms_may_invoke_the_notifier(run: Run, aws: dict[str, Any]) -> None:
    created = create_in_moto(run, aws)
    alarm_arns = [a["AlarmArn"] for a in aws["cloudwatch"].describe_alarms(AlarmNamePrefix=PREFIX)["MetricAlarms"]]
    assert len(alarm_arns) == len(run.of_type(ALARM))
    policy = json.loads(aws["lambda"].get_policy(FunctionName=created["notifier"])["Policy"])
    invokers = {
        (s["Principal"]["Service"], s["Condition"]["ArnLike"]["AWS:SourceArn"],
         s["Condition"]["StringEquals"]["AWS:SourceAccount"])
        for s in policy["Statement"]
    }  # fmt: skip
    assert invokers == {("lambda.alarms.cloudwatch.amazonaws.com", arn, ACCOUNT) for arn in alarm_arns}
    invoke = aws["lambda"].get_function_event_invoke_config(FunctionName=created["notifier"])
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"]["Destination"] == created["topic"]


def test_alarms_exist_in_cloudwatch_as_declared(run: Run, aws: dict[str, Any]) -> None:
    created = create_in_moto(run, aws)
    stored = {a["AlarmName"]: a for a in aws["cloudwatch"].describe_alarms(AlarmNamePrefix=PREFIX)["MetricAlarms"]}
    for declared in alarms(run).values():
        got = stored[declared["name"]]
        assert got["AlarmActions"] == got["OKActions"] == [created["notifier"]]
        assert {d["Name"]: d["Value"] for d in got["Dimensions"]} == declared["dimensions"]
        assert got["EvaluationPeriods"] == declared["evaluationPeriods"]
