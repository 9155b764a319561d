"""WorkerScaling: the worker service follows the pool's backlog, between minWorkers and maxWorkers.

Creates the Application Auto Scaling target on the service's desired count (min and max capacity), one
step scaling policy that sets an exact capacity, and the CloudWatch alarm that drives it from the stack
controller's `WorkersWanted` metric (controller/backlog.py), and lets the worker's task role protect its
own task from scale-in while runs are in flight (agent_image/task_protection.py). Needs the cluster and
service names, the worker's task role, the metric's namespace and the pool's name. Application Auto
Scaling acts through its service-linked role for ECS, which RegisterScalableTarget creates when the
account has none.

How it moves, and why missing data never removes a worker:
- The alarm is `WorkersWanted >= 0`: in ALARM whenever the controller published in the last minute.
  "Except for Auto Scaling actions, the actions happen only on state transitions" (CloudWatch user guide,
  "Alarm actions"): an alarm with an Auto Scaling action invokes it again every minute it stays in ALARM,
  so the policy follows each new value.
- The policy's steps are intervals of `WorkersWanted - 0` that set a capacity (ExactCapacity), the wanted
  count rounded up to the next step value (`step_values`): exact up to EXACT_UP_TO, then never more than a
  quarter over the wanted count, because Application Auto Scaling takes at most MAX_STEPS step adjustments
  per policy and maxWorkers goes up to 100. Never fewer workers than wanted, never more than maxWorkers;
  Application Auto Scaling also keeps the result within the target's min and max.
- With no datapoint (Prefect unreachable, key revoked, controller broken) the alarm goes to INSUFFICIENT_DATA
  (`treat_missing_data = "missing"`), which has no action: the count stays where it was. Only a published
  value, positive data, can lower it. The Alerts component's `controller-errors` and `controller-not-running`
  alarms report a controller that fails or does not run; an idle pool's silence is by design.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.agent_roles import Statement, arn_context, policy_document

WORKERS_WANTED = "WorkersWanted"
# A minute between scaling activities: a new worker takes about that long to start (docs/scaling.md, "How it decides").
COOLDOWN_SECONDS = 60
# After the pool's last run ends, one worker stays this long before the service goes to minWorkers, so
# a team that triggers runs one after another does not pay a cold start for each.
QUIET_MINUTES = 10
# "Step adjustments per step scaling policy", default 20 (Application Auto Scaling user guide, "Quotas for
# Application Auto Scaling"; adjustable on request, so a stack must fit the default): more fails `pulumi up`.
MAX_STEPS = 20
# Every wanted count up to this has a step of its own; above it a step serves several counts. With a quarter
# over at most (OVERSHOOT_DIVISOR 4), maxWorkers 100 takes exactly MAX_STEPS steps (tests/test_worker_scaling.py).
EXACT_UP_TO = 9
OVERSHOOT_DIVISOR = 4


def backlog_namespace(stack: str) -> str:
    """The stack's own CloudWatch namespace (shared with the alarms' OOM metric, components/alerts.py), so
    the controller's PutMetricData permission can be conditioned on it."""
    return f"prefect-fargate-{stack}"


def controller_environment(
    *, namespace: str, run_limit: int, min_workers: int, max_workers: int, lead_minutes: int
) -> dict[str, pulumi.Input[str]]:
    """What controller/backlog.py reads (BacklogSettings.from_environ), next to the controller's own settings."""
    return {
        "BACKLOG_NAMESPACE": namespace,
        "BACKLOG_RUN_LIMIT": str(run_limit),
        "BACKLOG_MIN_WORKERS": str(min_workers),
        "BACKLOG_MAX_WORKERS": str(max_workers),
        "BACKLOG_LEAD_MINUTES": str(lead_minutes),
        "BACKLOG_QUIET_MINUTES": str(QUIET_MINUTES),
    }


def put_metric_statement(namespace: str) -> Statement:
    """PutMetricData has no resource type (AWS's action table): scoped by the `cloudwatch:namespace` condition."""
    return {
        "Sid": "PublishBacklogMetrics",
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringEquals": {"cloudwatch:namespace": namespace}},
    }


def step_values(max_workers: int) -> list[int]:
    """The capacities the policy sets, ascending from 0 to max_workers. A step serves the wanted counts from
    the previous value + 1 up to its own value: its own count alone up to EXACT_UP_TO, then as many as keep it
    within a quarter over the smallest of them (n + n // 4, so floor(1.25 n))."""
    values = [0]
    while values[-1] < max_workers:
        smallest = values[-1] + 1
        widest = smallest if smallest <= EXACT_UP_TO else smallest + smallest // OVERSHOOT_DIVISOR
        values.append(min(max_workers, widest))
    return values


def step_adjustments(
    max_workers: int,
) -> list[aws.appautoscaling.PolicyStepScalingPolicyConfigurationStepAdjustmentArgs]:
    """[previous + 1, value + 1) -> value for each step value: WorkersWanted is a whole number, and above the
    threshold a step's lower bound is inclusive and its upper bound exclusive (API reference, StepAdjustment,
    whose rules these follow: contiguous, no overlap, one null upper bound, the last). The last step sets
    max_workers for any count from its lower bound up."""
    step = aws.appautoscaling.PolicyStepScalingPolicyConfigurationStepAdjustmentArgs
    values = step_values(max_workers)
    lowers = [0, *(value + 1 for value in values[:-1])]
    return [
        step(
            metric_interval_lower_bound=str(lower),
            metric_interval_upper_bound=str(value + 1) if value < max_workers else None,
            scaling_adjustment=value,
        )
        for lower, value in zip(lowers, values, strict=True)
    ]


def task_protection_statement(task_arns: pulumi.Input[str]) -> Statement:
    """The ECS agent's task-protection endpoint calls UpdateTaskProtection with the task role's credentials;
    its resource type is `task` (AWS's action table): the cluster's tasks, `task/<cluster>/*`."""
    return {
        "Sid": "ProtectOwnTaskFromScaleIn",
        "Effect": "Allow",
        "Action": "ecs:UpdateTaskProtection",
        "Resource": task_arns,
    }


@dataclass(frozen=True, kw_only=True)
class WorkerScalingArgs:
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    task_role_name: pulumi.Input[str]  # the worker's task role (AgentRoles)
    min_workers: int
    max_workers: int
    namespace: str  # backlog_namespace(stack)
    work_pool: str  # the metrics' WorkPool dimension
    alarm_prefix: str  # unique per stack


class WorkerScaling(pulumi.ComponentResource):
    """The service's scalable target, its exact-capacity policy and the alarm on WorkersWanted."""

    target: aws.appautoscaling.Target
    """ecs:service:DesiredCount of the worker service, between min and max workers."""
    policy: aws.appautoscaling.Policy
    """Sets the desired count to the controller's WorkersWanted."""
    alarm: aws.cloudwatch.MetricAlarm
    """In ALARM while WorkersWanted is published; invokes the policy every minute."""

    def __init__(self, name: str, args: WorkerScalingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:scaling:WorkerScaling", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.target = aws.appautoscaling.Target(
            f"{name}-target",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.format("service/{0}/{1}", args.cluster_name, args.service_name),
            min_capacity=args.min_workers,
            max_capacity=args.max_workers,
            opts=child,
        )
        self.policy = aws.appautoscaling.Policy(
            f"{name}-follow-backlog",
            policy_type="StepScaling",
            service_namespace=self.target.service_namespace,
            scalable_dimension=self.target.scalable_dimension,
            resource_id=self.target.resource_id,
            step_scaling_policy_configuration=aws.appautoscaling.PolicyStepScalingPolicyConfigurationArgs(
                adjustment_type="ExactCapacity",
                cooldown=COOLDOWN_SECONDS,
                metric_aggregation_type="Maximum",
                step_adjustments=step_adjustments(args.max_workers),
            ),
            opts=child,
        )
        self.alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-workers-wanted",
            name=f"{args.alarm_prefix}-workers-wanted",
            alarm_description=(
                "Drives the worker count: in ALARM while the stack controller publishes WorkersWanted, so "
                "its scaling policy sets that many workers every minute. Not a problem by itself; with no "
                "data the count stays as it is (see the controller-errors and controller-not-running alarms)."
            ),
            namespace=args.namespace,
            metric_name=WORKERS_WANTED,
            dimensions={"WorkPool": args.work_pool},
            statistic="Maximum",
            comparison_operator="GreaterThanOrEqualToThreshold",
            threshold=0,
            period=60,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data="missing",
            alarm_actions=[self.policy.arn],
            opts=child,
        )
        account, partition, region = arn_context(self)
        aws.iam.RolePolicy(
            f"{name}-task-protection",
            role=args.task_role_name,
            policy=policy_document(
                task_protection_statement(
                    pulumi.Output.format(
                        "arn:{0}:ecs:{1}:{2}:task/{3}/*", partition, region, account, args.cluster_name
                    )
                )
            ),
            opts=child,
        )
        self.register_outputs({"policy_arn": self.policy.arn})
