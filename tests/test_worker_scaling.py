"""WorkerScaling, the backlog alarms and the dashboard: what the program registers, and what AWS (moto)
makes of it. Missing data must never lower the worker count: only the alarm's ALARM state acts."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import boto3
import pulumi
import pulumi_aws as aws
import pytest
from conftest import BASE_CONFIG, REGION, STACK, Run, put_metric_alarm_request, run_program

from components.worker_scaling import step_adjustments

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


def test_the_policy_sets_exactly_the_workers_wanted_at_small_sizes(scaled: Run) -> None:
    config = scaled.one(POLICY).plain_inputs["stepScalingPolicyConfiguration"]
    assert config["adjustmentType"] == "ExactCapacity"
    steps = {(s["metricIntervalLowerBound"], s.get("metricIntervalUpperBound")): s["scalingAdjustment"]
             for s in config["stepAdjustments"]}  # fmt: skip
    assert steps == {("0", "1"): 0, ("1", "2"): 1, ("2", "3"): 2, ("3", None): 3}


Step = tuple[float | None, float | None, int]  # lower bound, upper bound (None: unbounded), capacity set


def rendered(adjustments: list[Any]) -> list[Step]:
    """Steps as AWS reads them, from the resource's inputs (dicts) or from step_adjustments' Args."""

    def field(step: Any, name: str, attr: str) -> Any:
        return step.get(name) if isinstance(step, dict) else getattr(step, attr)

    def bound(value: Any) -> float | None:
        return None if value is None else float(value)

    return [
        (bound(field(s, "metricIntervalLowerBound", "metric_interval_lower_bound")),
         bound(field(s, "metricIntervalUpperBound", "metric_interval_upper_bound")),
         int(field(s, "scalingAdjustment", "scaling_adjustment")))
        for s in adjustments
    ]  # fmt: skip


def step_problems(steps: list[Step], max_workers: int) -> list[str]:
    """What AWS would refuse (the quota of 20 step adjustments per step scaling policy; StepAdjustment's rules:
    no gap or overlap, at most one null lower and one null upper bound, never both in one step, a negative lower
    bound needs a null one and a positive upper bound a null one) and what our rule forbids: for every whole
    WorkersWanted 0..max (the alarm fires at >= 0, so the bounds start at 0), the capacity set is at least the
    count, exact up to 9, at most a quarter over (n + n // 4) and at most max."""
    problems = []
    lowers, uppers = [s[0] for s in steps], [s[1] for s in steps]
    if len(steps) > 20:
        problems.append(f"{len(steps)} step adjustments")
    if lowers.count(None) > 1 or uppers.count(None) > 1 or any(lo is None and up is None for lo, up, _ in steps):
        problems.append("null bounds")
    if any(lo is not None and lo < 0 for lo in lowers) and None not in lowers:
        problems.append("a negative lower bound without a null one")
    if any(up is not None and up > 0 for up in uppers) and None not in uppers:
        problems.append("a positive upper bound without a null one")
    ordered = sorted(steps, key=lambda s: -math.inf if s[0] is None else s[0])
    if ordered[0][0] != 0 or ordered[-1][1] is not None:
        problems.append(f"from {ordered[0][0]} to {ordered[-1][1]}, not 0 to unbounded")
    for (_, upper, _), (lower, _, _) in itertools.pairwise(ordered):
        if upper != lower:
            problems.append(f"a gap or overlap between {upper} and {lower}")
    for wanted in range(max_workers + 1):
        found = [c for lo, up, c in steps if (lo is None or lo <= wanted) and (up is None or wanted < up)]
        if len(found) != 1:
            problems.append(f"WorkersWanted {wanted} is in {len(found)} steps")
            continue
        capacity = found[0]
        ceiling = wanted if wanted <= 9 else wanted + wanted // 4
        if not wanted <= capacity <= min(ceiling, max_workers):
            problems.append(f"WorkersWanted {wanted} sets {capacity}")
    return problems


def test_every_allowed_max_workers_renders_a_policy_within_aws_rules() -> None:
    """maxWorkers 1 to 100 (config's range): each policy fits AWS's quota and never sets fewer than wanted."""
    for max_workers in range(1, 101):
        assert step_problems(rendered(step_adjustments(max_workers)), max_workers) == [], max_workers


def test_the_step_check_finds_what_aws_refuses() -> None:
    one_per_count = [(float(n), float(n + 1) if n < 25 else None, n) for n in range(26)]  # the old policy, max 25
    assert step_problems(one_per_count, 25) == ["26 step adjustments"]
    rounded_down = [(0.0, 1.0, 0), (1.0, 10.0, 1), (10.0, None, 10)]
    assert step_problems(rounded_down, 10)[:2] == ["WorkersWanted 2 sets 1", "WorkersWanted 3 sets 1"]
    assert step_problems([(0.0, 1.0, 0), (2.0, None, 2)], 2) == [
        "a gap or overlap between 1.0 and 2.0", "WorkersWanted 1 is in 0 steps"
    ]  # fmt: skip
    assert step_problems([(0.0, None, 3)], 2) == [f"WorkersWanted {n} sets 3" for n in range(3)]
    assert step_problems([(0.0, 2.0, 0), (1.0, None, 1)], 1)[0] == "a gap or overlap between 2.0 and 1.0"
    assert step_problems([(None, 0.0, 0), (0.0, 5.0, 1), (5.0, 6.0, 5)], 5)[:2] == [
        "a positive upper bound without a null one", "from None to 6.0, not 0 to unbounded"
    ]  # fmt: skip


@pytest.fixture(scope="module")
def widest() -> Run:
    return run_program({**BASE_CONFIG, "minWorkers": "0", "maxWorkers": "100"})


def test_max_workers_100_renders_twenty_steps_rounding_up(widest: Run) -> None:
    config = widest.one(POLICY).plain_inputs["stepScalingPolicyConfiguration"]
    steps = rendered(config["stepAdjustments"])
    assert step_problems(steps, 100) == []
    assert [c for _, _, c in steps] == [*range(10), 12, 16, 21, 27, 35, 45, 57, 72, 91, 100]
    assert widest.one(TARGET).plain_inputs["maxCapacity"] == 100


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
