"""What a stack costs a month, from what the program registers (a mocked run) and AWS's list prices.

The one place for the price figures the docs quote (us-east-1 list prices, read 2026-11 from the
pages linked below); `devtools.check_config` prints the estimate for a stack file, and
tests/test_check_config.py checks the README's cost figures against these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from components.agent_image import KEEP_IMAGES
from components.stack_controller import HANDLER as CONTROLLER_HANDLER
from devtools.mocks import Run

HOURS_PER_MONTH = 730
PRICED_REGION = "us-east-1"  # the region every price below is for; other regions' differ
# https://aws.amazon.com/fargate/pricing/ (Linux, us-east-1): per vCPU-hour and per GB-hour.
FARGATE_VCPU_HOUR = {"X86_64": 0.04048, "ARM64": 0.03238}
FARGATE_GB_HOUR = {"X86_64": 0.004445, "ARM64": 0.00356}
SPOT_SAVING = 0.70  # "up to 70% discount" (AWS's figure; Spot prices move with spare capacity)
PUBLIC_IPV4_HOUR = 0.005  # https://aws.amazon.com/vpc/pricing/ (public IPv4 address)
SECRET_MONTH = 0.40  # https://aws.amazon.com/secrets-manager/pricing/
# https://aws.amazon.com/ecr/pricing/: $0.10 per GB-month; at most about 0.5 GB per image (layers shared between
# images are stored once, so usually less), KEEP_IMAGES of the stack's own builds kept.
ECR_IMAGE_MONTH = 0.5 * 0.10
ALARM_MONTH = 0.10  # https://aws.amazon.com/cloudwatch/pricing/ (standard resolution metric alarm)
KMS_KEY_MONTH = 1.00  # https://aws.amazon.com/kms/pricing/ (customer managed key, rotation off)
# https://aws.amazon.com/lambda/pricing/ (x86): per request and per GB-second, free tier left out.
LAMBDA_REQUEST = 0.20 / 1_000_000
LAMBDA_GB_SECOND = 0.0000166667
CONTROLLER_RUNS_MONTH = 60 * 24 * 30  # its schedule, rate(1 minute) (docs/runs.md, "What the controller costs")
CONTROLLER_RUN_SECONDS = 1.0  # a few HTTP calls: an estimate, not measured on AWS
CONTROLLER_LOGS_MONTH = 0.01  # about 400 bytes a run: 17 MB at $0.50 per GB ingested
# https://aws.amazon.com/cloudwatch/pricing/: a custom metric ($0.30 a month, prorated by the hours it has data)
# and PutMetricData requests ($0.01 per 1,000). The backlog job publishes only while the pool is busy
# (controller/backlog.py): usage, left out of the estimate like logs; benchmarks/scale_day_bench.py prices a
# nightly team's.
METRIC_MONTH = 0.30
PUT_METRIC_DATA_REQUEST = 0.01 / 1000


@dataclass(frozen=True)
class Line:
    item: str
    dollars: float


@dataclass(frozen=True)
class Estimate:
    lines: tuple[Line, ...]
    per_flow_run_hour: float | None  # an `ecs` pool's flow-run task, per hour it runs; not in the total

    @property
    def total(self) -> float:
        return sum(line.dollars for line in self.lines)


def fargate_hour(cpu_units: int, memory_mib: int, architecture: str) -> float:
    """On-demand price of one Fargate task of this size for an hour."""
    return cpu_units / 1024 * FARGATE_VCPU_HOUR[architecture] + memory_mib / 1024 * FARGATE_GB_HOUR[architecture]


def monthly_estimate(run: Run) -> Estimate:
    """The always-on part of the stack, a month of 730 hours; usage (logs, S3, flow-run tasks, the backlog metrics
    of a busy pool, the alert notifier's runs) left out."""
    task = run.one("aws:ecs/taskDefinition:TaskDefinition").plain_inputs
    service = run.one("aws:ecs/service:Service").plain_inputs
    architecture = task["runtimePlatform"]["cpuArchitecture"]
    count = int(service["desiredCount"])
    spot = any(s["capacityProvider"] == "FARGATE_SPOT" for s in service.get("capacityProviderStrategies") or [])
    cpu, memory = int(task["cpu"]), int(task["memory"])
    worker = count * fargate_hour(cpu, memory, architecture) * HOURS_PER_MONTH * ((1 - SPOT_SAVING) if spot else 1)
    size = f"{cpu} cpu / {memory} MiB, {architecture}{', Spot' if spot else ''}"
    lines = [Line(f"{count} worker task(s), {size}", worker)]
    if service["networkConfiguration"].get("assignPublicIp"):
        lines.append(Line(f"{count} public IPv4 address(es)", count * PUBLIC_IPV4_HOUR * HOURS_PER_MONTH))
    counted = (
        ("aws:secretsmanager/secret:Secret", "Secrets Manager secret(s)", SECRET_MONTH),
        (
            "aws:ecr/repository:Repository",
            f"ECR repository (at most, {KEEP_IMAGES} images kept)",
            KEEP_IMAGES * ECR_IMAGE_MONTH,
        ),
        ("aws:cloudwatch/metricAlarm:MetricAlarm", "CloudWatch alarm(s)", ALARM_MONTH),
        ("aws:kms/key:Key", "KMS key(s) made by the stack", KMS_KEY_MONTH),
    )
    for typ, item, price in counted:
        if n := len(run.of_type(typ)):
            lines.append(Line(f"{n} {item}", n * price))
    # The stack controller runs every minute; the alert notifier only per alarm change (cents, usage).
    (controller,) = (
        f for f in run.of_type("aws:lambda/function:Function") if f.plain_inputs["handler"] == CONTROLLER_HANDLER
    )
    gb_seconds = CONTROLLER_RUNS_MONTH * CONTROLLER_RUN_SECONDS * int(controller.plain_inputs["memorySize"]) / 1024
    lambda_month = CONTROLLER_RUNS_MONTH * LAMBDA_REQUEST + gb_seconds * LAMBDA_GB_SECOND + CONTROLLER_LOGS_MONTH
    lines.append(Line("stack controller (Lambda every minute, its logs)", lambda_month))
    return Estimate(lines=tuple(lines), per_flow_run_hour=_flow_run_hour(run, architecture))


def _flow_run_hour(run: Run, architecture: str) -> float | None:
    """An `ecs` pool's flow-run task per hour (its template's default size, plus its public IPv4 address)."""
    (pool,) = run.of_type("pulumi-python:dynamic/prefect:WorkPool")
    if pool.plain_inputs["type"] != "ecs":
        return None
    variables = json.loads(pool.plain_inputs["base_job_template"])["variables"]["properties"]
    size = fargate_hour(variables["cpu"]["default"], variables["memory"]["default"], architecture)
    return size + PUBLIC_IPV4_HOUR
