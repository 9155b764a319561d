"""WorkerScaling, the backlog alarms and the dashboard: what the program registers, and what AWS (moto)
makes of it. Missing data must never lower the worker count: only the alarm's ALARM state acts."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pulumi
import pulumi_aws as aws
import pytest
from conftest import BASE_CONFIG, REGION, STACK, Run, put_metric_alarm_request, run_program

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TARGET = "aws:appautoscaling/target:Target"
POLICY = "aws:appautoscaling/policy:Policy"
PREFIX = f"prefect-fargate-{STACK}"
SCALED = {**BASE_CONFIG, "minWorkers": "0", "maxWorkers": "3"}


@pytest.fixture(scope="module")
def scaled() -> Run:
    return run_program(SCALED)


def alarm(run: Run, suffix: str) -> dict[str, Any]:
    return next(r.plain_inputs for r in run.of_type(ALARM) if r.plain_inputs["name"] == f"{PREFIX}-{suffix}")


def test_the_default_stack_keeps_its_fixed_worker(default_run: Run) -> None:
    assert default_run.of_type(TARGET) == [] and default_run.of_type(POLICY) == []
    assert default_run.one("aws:ecs/service:Service").plain_inputs["desiredCount"] == 1
    assert "worker-not-running" in {
        r.plain_inputs["name"].removeprefix(f"{PREFIX}-") for r in default_run.of_type(ALARM)
    }


def test_the_service_count_is_a_target_between_min_and_max(scaled: Run) -> None:
    target = scaled.one(TARGET).plain_inputs
    cluster, service = scaled.outputs["clusterName"], scaled.outputs["serviceName"]
    assert target["resourceId"] == f"service/{cluster}/{service}"
    assert (target["serviceNamespace"], target["scalableDimension"]) == ("ecs", "ecs:service:DesiredCount")
    assert (target["minCapacity"], target["maxCapacity"]) == (0, 3)
    assert scaled.one("aws:ecs/service:Service").plain_inputs["desiredCount"] == 0


def test_the_policy_sets_exactly_the_workers_wanted(scaled: Run) -> None:
    config = scaled.one(POLICY).plain_inputs["stepScalingPolicyConfiguration"]
    assert config["adjustmentType"] == "ExactCapacity"
    steps = {(s["metricIntervalLowerBound"], s.get("metricIntervalUpperBound")): s["scalingAdjustment"]
             for s in config["stepAdjustments"]}  # fmt: skip
    assert steps == {("0", "1"): 0, ("1", "2"): 1, ("2", "3"): 2, ("3", None): 3}


def test_only_published_data_moves_the_count(scaled: Run) -> None:
    """ALARM (data >= 0) invokes the policy; missing data is INSUFFICIENT_DATA, which has no action."""
    driver = alarm(scaled, "workers-wanted")
    policy = scaled.one(POLICY).outputs["arn"]
    assert (driver["metricName"], driver["namespace"]) == ("WorkersWanted", PREFIX)
    assert driver["dimensions"] == {"WorkPool": "fargate-pool"}
    assert (driver["comparisonOperator"], driver["threshold"]) == ("GreaterThanOrEqualToThreshold", 0)
    assert driver["treatMissingData"] == "missing"
    assert driver["alarmActions"] == [policy]
    assert not driver.get("okActions") and not driver.get("insufficientDataActions")


def test_scale_to_zero_has_no_not_running_alarm_but_late_and_silence_alarms(scaled: Run) -> None:
    names = {r.plain_inputs["name"].removeprefix(f"{PREFIX}-") for r in scaled.of_type(ALARM)}
    assert "worker-not-running" not in names
    late = alarm(scaled, "late-runs")
    assert (late["metricName"], late["threshold"], late["treatMissingData"]) == (
        "OldestLateRunAge",
        900,
        "notBreaching",
    )
    # The controller's silence is watched on Lambda's Invocations (test_stack_controller), not on WorkersWanted,
    # which an idle pool does not publish.
    silent = alarm(scaled, "controller-not-running")
    assert (silent["metricName"], silent["treatMissingData"]) == ("Invocations", "breaching")
    on_wanted = [
        r.plain_inputs["name"] for r in scaled.of_type(ALARM) if r.plain_inputs["metricName"] == "WorkersWanted"
    ]
    assert on_wanted == [f"{PREFIX}-workers-wanted"]  # the scaling alarm alone, which treats missing data as missing


def test_late_run_minutes_sets_the_late_alarm() -> None:
    run = run_program({**BASE_CONFIG, "lateRunMinutes": "45"})
    assert alarm(run, "late-runs")["threshold"] == 45 * 60


def test_the_service_ignores_the_count_only_when_scaled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mocks do not see resource options: record the service's."""
    seen: list[pulumi.ResourceOptions | None] = []
    original = aws.ecs.Service.__init__

    def recording(self: Any, name: str, *args: Any, opts: pulumi.ResourceOptions | None = None, **kw: Any) -> None:
        seen.append(opts)
        original(self, name, *args, opts=opts, **kw)

    monkeypatch.setattr(aws.ecs.Service, "__init__", recording)
    run_program(BASE_CONFIG)
    run_program(SCALED)
    assert [o.ignore_changes if o else None for o in seen] == [None, ["desiredCount"]]


def test_dashboard_shows_workers_runs_and_trouble(scaled: Run) -> None:
    dashboard = scaled.one("aws:cloudwatch/dashboard:Dashboard").plain_inputs
    assert dashboard["dashboardName"] == PREFIX
    assert scaled.outputs["dashboardUrl"] == (
        f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#dashboards/dashboard/{PREFIX}"
    )
    widgets = {
        w["properties"]["title"]: w["properties"]["metrics"] for w in json.loads(dashboard["dashboardBody"])["widgets"]
    }
    names = {title: {m[1] for m in metrics} for title, metrics in widgets.items()}
    assert names == {
        "Workers: wanted (desired count) and running": {"WorkersWanted", "CPUUtilization"},
        "Worker CPU and memory (%)": {"CPUUtilization", "MemoryUtilization"},
        "Runs: due, Late, Pending, Running (no data = 0)": {"RunsDue", "RunsLate", "RunsPending", "RunsRunning"},
        "Time to Running (seconds)": {"StartDelayP50", "OldestLateRunAge"},
        "Unexpected stops and dead letters": {"TriggeredRules", "WorkerOomKills"},
    }
    backlog = [m for metrics in widgets.values() for m in metrics if m[0] == PREFIX and m[1] != "WorkerOomKills"]
    assert all(m[2:4] == ["WorkPool", "fargate-pool"] for m in backlog)


# -- what AWS does with it (moto) ------------------------------------------------------------------------


def test_target_policy_alarms_and_dashboard_are_accepted_by_aws(aws_env: None, scaled: Run) -> None:
    """moto's Application Auto Scaling and CloudWatch take them as rendered (botocore validates each call)."""
    target = scaled.one(TARGET).plain_inputs
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=scaled.outputs["clusterName"])
    family = ecs.register_task_definition(
        family="worker", containerDefinitions=[{"name": "w", "image": "prefect", "memory": 512}]
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster=scaled.outputs["clusterName"], serviceName=scaled.outputs["serviceName"], taskDefinition=family
    )
    scaling = boto3.client("application-autoscaling")
    keys = {k: target[k] for k in ("serviceNamespace", "resourceId", "scalableDimension")}
    as_api = {"ServiceNamespace": keys["serviceNamespace"], "ResourceId": keys["resourceId"],
              "ScalableDimension": keys["scalableDimension"]}  # fmt: skip
    scaling.register_scalable_target(**as_api, MinCapacity=int(target["minCapacity"]),
                                     MaxCapacity=int(target["maxCapacity"]))  # fmt: skip
    config = scaled.one(POLICY).plain_inputs["stepScalingPolicyConfiguration"]
    policy_arn = scaling.put_scaling_policy(
        **as_api,
        PolicyName="follow-backlog",
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": config["adjustmentType"],
            "Cooldown": int(config["cooldown"]),
            "MetricAggregationType": config["metricAggregationType"],
            "StepAdjustments": [
                {
                    "MetricIntervalLowerBound": float(s["metricIntervalLowerBound"]),
                    **({"MetricIntervalUpperBound": float(s["metricIntervalUpperBound"])}
                       if s.get("metricIntervalUpperBound") else {}),
                    "ScalingAdjustment": int(s["scalingAdjustment"]),
                }
                for s in config["stepAdjustments"]
            ],
        },
    )["PolicyARN"]  # fmt: skip
    (stored,) = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert (stored["MinCapacity"], stored["MaxCapacity"]) == (0, 3)
    cloudwatch = boto3.client("cloudwatch")
    driver = alarm(scaled, "workers-wanted")
    cloudwatch.put_metric_alarm(**put_metric_alarm_request(driver, [policy_arn]))
    (stored_alarm,) = cloudwatch.describe_alarms(AlarmNames=[driver["name"]])["MetricAlarms"]
    assert stored_alarm["AlarmActions"] == [policy_arn]
    dashboard = scaled.one("aws:cloudwatch/dashboard:Dashboard").plain_inputs
    cloudwatch.put_dashboard(DashboardName=dashboard["dashboardName"], DashboardBody=dashboard["dashboardBody"])
    assert json.loads(cloudwatch.get_dashboard(DashboardName=PREFIX)["DashboardBody"]) == json.loads(
        dashboard["dashboardBody"]
    )
