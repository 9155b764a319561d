"""StackDashboard: one CloudWatch dashboard per stack, the worker and its pool's backlog at a glance.

Widgets, top to bottom (docs/scaling.md, "Metrics, alarms and the dashboard", describes each):
1. Workers: the controller's WorkersWanted (the desired count the scaling policy sets) next to ECS's
   service CPU SampleCount (datapoints only while a worker runs; none when scaled to zero).
2. Worker CPU and memory, Maximum and Average over the service's tasks.
3. Runs: due within the lead time, Late, Pending, Running (a gap means zero: controller/backlog.py
   publishes them only while the pool is busy).
4. Time to Running: the p50 delay from expected start to start, and the oldest Late (or handed-back) run's age.
5. Trouble: unexpected worker stops and OOM kills (components/alerts.py), and with an `ecs` pool the
   observer's dead letters.
Needs the cluster and service names, the backlog namespace and pool, the Alerts' stopped-task rule and
the observer's dead-letter queue (when they exist). Output `url`, the console's address of the dashboard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.alerts import OOM_METRIC


@dataclass(frozen=True, kw_only=True)
class StackDashboardArgs:
    dashboard_name: str
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    namespace: str  # the backlog metrics' (controller/backlog.py)
    work_pool: str
    stopped_tasks_rule_name: pulumi.Input[str] | None = None  # Alerts' rule, when alarms are on
    dead_letter_queue_name: pulumi.Input[str] | None = None  # an `ecs` pool's observer DLQ


def _widget(title: str, metrics: list[list[Any]], region: str, y: int, *, stat: str = "Maximum") -> dict[str, Any]:
    return {
        "type": "metric",
        "x": 0,
        "y": y,
        "width": 24,
        "height": 6,
        "properties": {
            "title": title,
            "view": "timeSeries",
            "region": region,
            "period": 60,
            "stat": stat,
            "metrics": metrics,
        },
    }


RUN_METRICS = (("RunsDue", "due"), ("RunsLate", "Late"), ("RunsPending", "Pending"), ("RunsRunning", "Running"))


def dashboard_body(
    *,
    region: str,
    cluster: str,
    service: str,
    namespace: str,
    work_pool: str,
    stopped_rule: str | None,
    dead_letter_queue: str | None,
) -> dict[str, Any]:
    """The dashboard's JSON (CloudWatch "Dashboard body structure"), one full-width widget per row."""
    pool = ["WorkPool", work_pool]
    ecs = ["ClusterName", cluster, "ServiceName", service]
    trouble: list[list[Any]] = []
    if stopped_rule is not None:
        trouble += [
            ["AWS/Events", "TriggeredRules", "RuleName", stopped_rule, {"stat": "Sum", "label": "unexpected stops"}],
            [namespace, OOM_METRIC, {"stat": "Sum", "label": "OOM kills"}],
        ]
    if dead_letter_queue is not None:
        trouble.append(
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dead_letter_queue, {"label": "dead letters"}]
        )
    widgets = [
        _widget(
            "Workers: wanted (desired count) and running",
            [
                [namespace, "WorkersWanted", *pool, {"label": "wanted"}],
                ["AWS/ECS", "CPUUtilization", *ecs, {"stat": "SampleCount", "label": "running (ECS samples)"}],
            ],
            region,
            0,
        ),
        _widget(
            "Worker CPU and memory (%)",
            [
                ["AWS/ECS", "CPUUtilization", *ecs, {"label": "CPU max"}],
                ["AWS/ECS", "CPUUtilization", *ecs, {"stat": "Average", "label": "CPU avg"}],
                ["AWS/ECS", "MemoryUtilization", *ecs, {"label": "memory max"}],
                ["AWS/ECS", "MemoryUtilization", *ecs, {"stat": "Average", "label": "memory avg"}],
            ],
            region,
            6,
        ),
        _widget(
            "Runs: due, Late, Pending, Running (no data = 0)",
            [[namespace, name, *pool, {"label": label}] for name, label in RUN_METRICS],
            region,
            12,
        ),
        _widget(
            "Time to Running (seconds)",
            [
                [namespace, "StartDelayP50", *pool, {"label": "expected start to start, p50"}],
                [namespace, "OldestLateRunAge", *pool, {"label": "oldest Late or handed-back run"}],
            ],
            region,
            18,
        ),
    ]
    if trouble:
        widgets.append(_widget("Unexpected stops and dead letters", trouble, region, 24, stat="Sum"))
    return {"widgets": widgets}


def dashboard_url(region: str, name: str) -> str:
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/{name}"


class StackDashboard(pulumi.ComponentResource):
    """The stack's CloudWatch dashboard."""

    dashboard: aws.cloudwatch.Dashboard
    url: pulumi.Output[str]
    """The dashboard in the CloudWatch console (stack output `dashboardUrl`)."""

    def __init__(self, name: str, args: StackDashboardArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:dashboard:StackDashboard", name, None, opts)
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        body = pulumi.Output.all(
            region=region,
            cluster=args.cluster_name,
            service=args.service_name,
            stopped_rule=args.stopped_tasks_rule_name,
            dead_letter_queue=args.dead_letter_queue_name,
        ).apply(lambda v: json.dumps(dashboard_body(**v, namespace=args.namespace, work_pool=args.work_pool)))
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=args.dashboard_name,
            dashboard_body=body,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.url = region.apply(lambda r: dashboard_url(r, args.dashboard_name))
        self.register_outputs({"url": self.url})
