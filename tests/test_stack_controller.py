"""The stack controller's AWS side under mocks (components/stack_controller.py): the function, its zip, its
schedule, its role (exactly what it may touch), its log group, its alarm and, when chosen, its subnets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ACCOUNT, BASE_CONFIG, REGION, Run, load_stack_config, modules_imported_in_lambda, run_program

from components.config import ConfigError
from components.stack_controller import MISSED_HEARTBEATS, controller_archive

FUNCTION = "aws:lambda/function:Function"
CONTROLLER_ROLE_POLICY = ("aws:iam/rolePolicy:RolePolicy", "controller")
VPC_CONFIG = {
    **BASE_CONFIG,
    "prefectApiUrl": "http://prefect.internal:4200/api",
    "vpcId": "vpc-0123456789abcdef0",
    "subnetIds": '["subnet-0123456789abcdef0"]',
    "securityGroupIds": '["sg-0123456789abcdef0"]',
    "assignPublicIp": "false",
    "controllerInVpc": "true",
}
del VPC_CONFIG["prefectAccountId"], VPC_CONFIG["prefectWorkspaceId"]


def function(run: Run) -> dict[str, Any]:
    return run.one(FUNCTION, "controller").plain_inputs


def statements(run: Run) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in run.one(*CONTROLLER_ROLE_POLICY).json_input("policy")["Statement"]}


@pytest.fixture(scope="module")
def ecs_run() -> Run:
    return run_program({**BASE_CONFIG, "workPoolType": "ecs"})


def test_the_function_runs_every_minute_small_and_quick_with_the_stacks_settings(default_run: Run) -> None:
    fn = function(default_run)
    assert (fn["runtime"], fn["handler"], fn["memorySize"]) == ("python3.13", "controller.handler.handler", 128)
    assert fn["timeout"] < 60
    env = fn["environment"]["variables"]
    secret = default_run.one("aws:secretsmanager/secret:Secret").outputs["arn"]
    cluster = default_run.one("aws:ecs/cluster:Cluster").outputs["arn"]
    assert env == {
        "PREFECT_API_URL": default_run.outputs["prefectApiUrl"],
        "PREFECT_CREDENTIAL_ENV": "PREFECT_API_KEY",
        "PREFECT_CREDENTIAL_SECRET_ARN": secret,  # the secret's ARN: the key itself is read at run time
        "WORK_POOL": "fargate-pool",
        "WORK_POOL_TYPE": "process",
        "CLUSTER_ARN": cluster,
        "SILENCE_SECONDS": str(MISSED_HEARTBEATS * 180),  # five of the flow runs' 180 s beats
        "STUCK_SECONDS": "900",
        "RETRY_CRASHED_RUNS": "true",
        # The backlog job (controller/backlog.py): the fixed worker of a stack without minWorkers/maxWorkers.
        "BACKLOG_NAMESPACE": "prefect-fargate-test",
        "BACKLOG_RUN_LIMIT": "4",
        "BACKLOG_MIN_WORKERS": "1",
        "BACKLOG_MAX_WORKERS": "1",
        "BACKLOG_LEAD_MINUTES": "3",
        "BACKLOG_QUIET_MINUTES": "10",
        # The failed-run notices (controller/notify.py): the alert topic, the stack's name, the worker's log.
        "ALERT_TOPIC_ARN": default_run.outputs["alertTopicArn"],
        "ALERT_PREFIX": "prefect-fargate-test",
        "WORKER_LOG_GROUP": default_run.outputs["logGroupName"],
    }
    assert "vpcConfig" not in fn or not fn["vpcConfig"]  # Prefect Cloud: outside any VPC
    rule = default_run.one("aws:cloudwatch/eventRule:EventRule", "controller").plain_inputs
    assert rule["scheduleExpression"] == "rate(1 minute)"
    target = default_run.one("aws:cloudwatch/eventTarget:EventTarget", "controller").plain_inputs
    function_arn = default_run.one(FUNCTION, "controller").outputs["arn"]
    rule_name = default_run.one("aws:cloudwatch/eventRule:EventRule", "controller").outputs["name"]
    assert (target["rule"], target["arn"]) == (rule_name, function_arn)
    permission = default_run.one("aws:lambda/permission:Permission", "controller-invoke").plain_inputs
    rule_arn = default_run.one("aws:cloudwatch/eventRule:EventRule", "controller").outputs["arn"]
    assert (permission["principal"], permission["sourceArn"], permission["action"]) == (
        "events.amazonaws.com",
        rule_arn,
        "lambda:InvokeFunction",
    )


def test_a_failed_or_late_minute_is_never_run_again(default_run: Run, aws_env: None) -> None:
    """Lambda retries a failed asynchronous invocation twice unless the function's event invoke config says 0; an
    event older than a minute is dropped. moto's Lambda takes the config as rendered (botocore checks the ranges)."""
    config = default_run.one("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig", "controller")
    inputs = config.plain_inputs
    assert inputs["functionName"] == default_run.one(FUNCTION, "controller").outputs["name"]
    assert (inputs["maximumRetryAttempts"], inputs["maximumEventAgeInSeconds"]) == (0, 60)
    assert "qualifier" not in inputs  # the unqualified function, which the schedule's target invokes
    assert not default_run.of_type("aws:lambda/provisionedConcurrencyConfig:ProvisionedConcurrencyConfig")
    assert "reservedConcurrentExecutions" not in function(default_run)  # new accounts cannot reserve below 10

    import boto3

    lam = boto3.client("lambda")
    role = boto3.client("iam").create_role(RoleName="controller", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam.create_function(
        FunctionName=inputs["functionName"], Runtime="python3.13", Role=role, Handler="h.h", Code={"ZipFile": b"x"}
    )
    lam.put_function_event_invoke_config(
        FunctionName=inputs["functionName"],
        MaximumRetryAttempts=int(inputs["maximumRetryAttempts"]),
        MaximumEventAgeInSeconds=int(inputs["maximumEventAgeInSeconds"]),
    )
    stored = lam.get_function_event_invoke_config(FunctionName=inputs["functionName"])
    assert (stored["MaximumRetryAttempts"], stored["MaximumEventAgeInSeconds"]) == (0, 60)


def test_a_minute_eventbridge_could_not_deliver_is_dropped_not_delivered_late(default_run: Run, aws_env: None) -> None:
    """EventBridge retries a delivery Lambda did not take for up to 24 hours unless the target's retry policy says
    otherwise; moto's EventBridge takes the policy as rendered (botocore checks the ranges)."""
    target = default_run.one("aws:cloudwatch/eventTarget:EventTarget", "controller").plain_inputs
    assert target["arn"] == default_run.one(FUNCTION, "controller").outputs["arn"]
    policy = target["retryPolicy"]
    assert (policy["maximumRetryAttempts"], policy["maximumEventAgeInSeconds"]) == (0, 60)

    import boto3

    events = boto3.client("events")
    events.put_rule(Name="controller", ScheduleExpression="rate(1 minute)")
    events.put_targets(
        Rule="controller",
        Targets=[
            {
                "Id": "controller",
                "Arn": target["arn"],
                "RetryPolicy": {
                    "MaximumRetryAttempts": int(policy["maximumRetryAttempts"]),
                    "MaximumEventAgeInSeconds": int(policy["maximumEventAgeInSeconds"]),
                },
            }
        ],
    )
    (stored,) = events.list_targets_by_rule(Rule="controller")["Targets"]
    assert stored["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}


def test_its_log_group_expires_with_the_stacks_retention() -> None:
    run = run_program({**BASE_CONFIG, "logRetentionDays": "14"})
    logs = run.one("aws:cloudwatch/logGroup:LogGroup", "controller").plain_inputs
    fn = function(run)
    assert logs["name"] == f"/aws/lambda/{fn['name']}" == "/aws/lambda/prefect-fargate-test-controller"
    assert logs["retentionInDays"] == 14
    assert fn["loggingConfig"]["logGroup"] == logs["name"]


def test_the_role_reads_its_secret_describes_its_workers_tasks_writes_its_log_and_nothing_else_on_a_process_pool(
    default_run: Run,
) -> None:
    """A process pool's runs are judged by their worker's task (each run's `prefect.worker.name` label names it)."""
    secret = default_run.one("aws:secretsmanager/secret:Secret").outputs["arn"]
    cluster = default_run.one("aws:ecs/cluster:Cluster").outputs
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/prefect-fargate-test-controller"
    assert statements(default_run) == {
        "OwnLogs": {
            "Sid": "OwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{log_group}:log-stream:*",
        },
        "ThisClustersTasks": {
            "Sid": "ThisClustersTasks",
            "Effect": "Allow",
            "Action": "ecs:DescribeTasks",
            "Resource": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster['name']}/*",
            "Condition": {"ArnEquals": {"ecs:cluster": cluster["arn"]}},
        },
        "Credential": {
            "Sid": "Credential",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": secret,
        },
        "PublishBacklogMetrics": {  # PutMetricData names no resource: scoped to the stack's namespace
            "Sid": "PublishBacklogMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": "prefect-fargate-test"}},
        },
        "PublishAlerts": {  # the failed-run notices: exactly the alert topic
            "Sid": "PublishAlerts",
            "Effect": "Allow",
            "Action": "sns:Publish",
            "Resource": default_run.outputs["alertTopicArn"],
        },
    }
    trust = default_run.one("aws:iam/role:Role", "controller").json_input("assumeRolePolicy")
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    assert not default_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")


def test_on_an_ecs_pool_it_describes_exactly_this_clusters_tasks(ecs_run: Run) -> None:
    cluster = ecs_run.one("aws:ecs/cluster:Cluster").outputs
    assert statements(ecs_run)["ThisClustersTasks"] == {
        "Sid": "ThisClustersTasks",
        "Effect": "Allow",
        "Action": "ecs:DescribeTasks",
        "Resource": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster['name']}/*",
        "Condition": {"ArnEquals": {"ecs:cluster": cluster["arn"]}},
    }
    assert set(statements(ecs_run)) == {
        "OwnLogs", "Credential", "ThisClustersTasks", "PublishBacklogMetrics", "PublishAlerts",
    }  # fmt: skip


def test_a_server_without_authentication_has_no_secret_to_read() -> None:
    run = run_program({"prefectApiUrl": "http://prefect.internal:4200/api"})
    assert set(statements(run)) == {"OwnLogs", "ThisClustersTasks", "PublishBacklogMetrics", "PublishAlerts"}
    assert "PREFECT_CREDENTIAL_SECRET_ARN" not in function(run)["environment"]["variables"]


def test_retry_crashed_runs_is_on_unless_turned_off(ecs_run: Run) -> None:
    assert function(ecs_run)["environment"]["variables"]["RETRY_CRASHED_RUNS"] == "true"
    config = {**BASE_CONFIG, "workPoolType": "ecs", "retryCrashedRuns": "false"}
    assert function(run_program(config))["environment"]["variables"]["RETRY_CRASHED_RUNS"] == "false"


def test_a_retry_crashed_runs_that_is_not_a_boolean_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError) as raised:
        load_stack_config({**BASE_CONFIG, "retryCrashedRuns": "yes"})
    (line,) = [line.strip() for line in str(raised.value).splitlines() if "retryCrashedRuns" in line]
    assert line == (
        "- prefect-fargate:retryCrashedRuns: 'yes' is not a boolean. Allowed: true or false. "
        "Fix: pulumi config set prefect-fargate:retryCrashedRuns true"
    )


def test_its_errors_and_its_silence_alarm_through_the_alert_notifier(default_run: Run) -> None:
    """Failing in 3 of 5 minutes (Errors), or not run at all for 15 (Invocations, missing data breaching): Lambda
    records Invocations for every run, so only a controller that is not invoked leaves it empty."""
    alarms = {
        r.plain_inputs["name"].rsplit("-controller-", 1)[1]: r.plain_inputs
        for r in default_run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if "-controller-" in r.plain_inputs["name"]
    }
    notifier = default_run.one(FUNCTION, "notifier").outputs["arn"]
    errors, silent = alarms.pop("errors"), alarms.pop("not-running")
    assert alarms == {}
    for alarm in (errors, silent):
        assert (alarm["namespace"], alarm["dimensions"]) == (
            "AWS/Lambda",
            {"FunctionName": function(default_run)["name"]},
        )
        assert alarm["alarmActions"] == alarm["okActions"] == [notifier]
    assert (errors["metricName"], errors["period"], errors["datapointsToAlarm"], errors["evaluationPeriods"]) == (
        "Errors", 60, 3, 5,
    )  # fmt: skip
    assert "aws logs tail /aws/lambda/" in errors["alarmDescription"]
    assert (silent["metricName"], silent["statistic"], silent["comparisonOperator"], silent["threshold"]) == (
        "Invocations", "Sum", "LessThanThreshold", 1,
    )  # fmt: skip
    assert (silent["period"], silent["datapointsToAlarm"], silent["evaluationPeriods"]) == (60, 15, 15)
    assert silent["treatMissingData"] == "breaching"
    rule = default_run.one("aws:cloudwatch/eventRule:EventRule", "controller").outputs["name"]
    assert f"describe-rule --name {rule} " in silent["alarmDescription"]


# -- failed-run notices (controller/notify.py) -----------------------------------------------------------


def test_the_nightly_stack_emails_failed_runs_through_the_controller() -> None:
    """A nightly team's stack (scaled to zero between runs, an email for alerts, a Slack block too): the controller is
    told the alert topic that alertEmail is subscribed to, and its role may publish to exactly that topic; the block
    hears of failed runs but gets no "pool has no worker" notice, which would fire at every nightly scale-in."""
    run = run_program(
        {
            **BASE_CONFIG,
            "minWorkers": "0",
            "maxWorkers": "2",
            "alertEmail": "oncall@example.com",
            "prefectNotifyBlock": "slack-webhook/ops-alerts",
        }
    )
    topic = run.outputs["alertTopicArn"]
    (subscription,) = [s.plain_inputs for s in run.of_type("aws:sns/topicSubscription:TopicSubscription")]
    assert (subscription["topic"], subscription["protocol"], subscription["endpoint"]) == (
        topic, "email", "oncall@example.com",
    )  # fmt: skip
    env = function(run)["environment"]["variables"]
    assert (env["ALERT_TOPIC_ARN"], env["ALERT_PREFIX"], env["WORKER_LOG_GROUP"]) == (
        topic, "prefect-fargate-test", run.outputs["logGroupName"],
    )  # fmt: skip
    assert statements(run)["PublishAlerts"] == {
        "Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic,
    }  # fmt: skip
    publishing = [s for s in statements(run).values() if "sns:" in json.dumps(s["Action"])]
    assert publishing == [statements(run)["PublishAlerts"]]
    policy = run.one("aws:sns/topicPolicy:TopicPolicy").json_input("policy")["Statement"]
    assert [(s["Principal"], s["Action"]) for s in policy] == [({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "sns:Publish")]
    notices = [
        a.plain_inputs["name"].split(": ", 1)[1]
        for a in run.of_type("pulumi-python:dynamic/prefect:Automation")
        if a.json_input("automation")["actions"][0]["type"] == "send-notification"
    ]
    assert notices == ["notify when a flow run of fargate-pool fails or crashes"]


def test_the_schedule_is_named_as_the_function_for_the_alarms_made_before_either(default_run: Run) -> None:
    """The alarms come before the controller (it publishes to their topic) and name both by that one name."""
    rule = default_run.one("aws:cloudwatch/eventRule:EventRule", "controller").plain_inputs
    assert rule["name"] == function(default_run)["name"] == "prefect-fargate-test-controller"


# -- the VPC choice ---------------------------------------------------------------------------------------


def test_in_the_vpc_it_runs_in_the_stacks_private_subnets_and_may_attach_only_there() -> None:
    run = run_program(VPC_CONFIG, secret_keys=["prefectApiKey"])
    fn = function(run)
    assert fn["vpcConfig"]["subnetIds"] == ["subnet-0123456789abcdef0"]
    assert fn["vpcConfig"]["securityGroupIds"] == ["sg-0123456789abcdef0"]
    ec2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    create = statements(run)["CreateEnis"]
    assert create["Resource"] == [
        f"{ec2}:network-interface/*",
        f"{ec2}:subnet/subnet-0123456789abcdef0",
        f"{ec2}:security-group/sg-0123456789abcdef0",
    ]
    assert statements(run)["ManageEnis"]["Resource"] == f"{ec2}:network-interface/*"


@pytest.mark.parametrize(
    "change",
    [{"assignPublicIp": "true"}, {"subnetIds": None}, {"vpcId": None, "subnetIds": None, "securityGroupIds": None}],
    ids=["public-subnets", "no-subnets", "default-vpc"],
)
def test_in_the_vpc_without_private_subnets_is_refused_with_the_fix(change: dict[str, str | None]) -> None:
    config = {k: v for k, v in {**VPC_CONFIG, **change}.items() if v is not None}
    if "vpcId" not in config:
        config["assignPublicIp"] = "true"  # the default VPC's own rule aside
    with pytest.raises(ConfigError) as raised:
        load_stack_config(config)
    (line,) = [line for line in str(raised.value).splitlines() if "controllerInVpc" in line and "Fix" in line]
    assert "gets no public IP" in line
    assert "pulumi config set prefect-fargate:assignPublicIp false" in line


# -- the zip ------------------------------------------------------------------------------------------------


def test_the_zip_holds_only_the_controller_and_imports_alone(tmp_path: Path) -> None:
    """Extracted as Lambda extracts it, the handler imports in an isolated interpreter that sees nothing but the
    zip's folder and the standard library (-I -S: no site-packages, no PYTHONPATH): boto3 is imported only when
    the handler runs, from the Lambda runtime."""
    archive = controller_archive()
    assert set(archive.assets) == {
        *(f"controller/{p.name}" for p in Path("controller").glob("*.py")),
        "alert_notifier/__init__.py",  # the alert topic's message (notify.py), shared with the alert notifier
        "alert_notifier/topic.py",
    }
    watched = ("alert_notifier", "boto3", "botocore", "httpx", "prefect")
    imported = modules_imported_in_lambda(archive, tmp_path, "controller.handler", watched)
    assert imported == ["alert_notifier", "alert_notifier.topic"]
