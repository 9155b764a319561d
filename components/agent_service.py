"""AgentService: the task definition and the ECS service that run the worker.

Needs the digest-pinned image, the two roles, the version-pinned API key reference, the network, the
cluster and log group (WorkerCluster) and what the workers need first (the work pool). The container
runs agent_image/worker_supervisor.py directly (no shell), which starts `prefect worker start` and,
when ECS stops the task, lets the runs in flight finish or hands them back to Prefect before the deadline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.config import TaskSize

CONTAINER_NAME = "prefect-worker"
HEALTH_PORT = 8080  # the worker's /health, bound to loopback: only the container's own probe reads it
# When ECS stops the worker (deploy, key rotation, scale-in), runs in flight may finish until the
# supervisor's hand-back time before this deadline; the rest are put back to Scheduled and run again
# from their start by another worker. Fargate's maximum: the longest runs that still finish in place,
# at the cost of a deploy or scale-in waiting up to two minutes per old task.
STOP_TIMEOUT_SECONDS = 120
# Read by agent_image/task_protection.py (ENABLED_ENV): only a scaled service's task role may protect its task.
TASK_PROTECTION_ENV = "PREFECT_FARGATE_TASK_PROTECTION"
# Kept before the deadline to end the unfinished runs and reschedule them through Prefect's API.
HAND_BACK_SECONDS = 15
# Where the Dockerfile copies agent_image/worker_supervisor.py.
SUPERVISOR_PATH = "/opt/prefect-fargate/worker_supervisor.py"
# Flow runs inherit the worker's environment. Their heartbeats are only the stack controller's fallback now
# (controller/recovery.py): a run whose worker task stopped is found through ECS (the run's worker label), and a
# flow-run process that dies under a live worker is reported Crashed by that worker itself (prefect/workers/base.py,
# a non-zero exit). What is left for heartbeats, a process gone while its worker could not report it, is rare, so
# the stack beats at Prefect's own default, 180 s (prefect/settings/models/flows.py), not its 30 s minimum: six
# times fewer events against Prefect Cloud's per-minute events limit (Hobby 2,000, shared with logs), and a silent
# run is judged after five missed beats (components/stack_controller.py, MISSED_HEARTBEATS). Set explicitly, so
# the controller's silence follows it whatever the image's Prefect defaults to.
FLOW_HEARTBEAT_SECONDS = 180
# What a flow run needs in its environment wherever it runs: the worker's process, or its own ECS task.
FLOW_RUN_ENVIRONMENT = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(FLOW_HEARTBEAT_SECONDS)}
# A process worker runs each flow run as its own Python process, and without --limit it starts every
# due run at once: a burst of scheduled jobs would get a default task killed for memory (16 trivial
# runs at once measured 1.2 GiB). Measured with benchmarks/worker_bench.py (docs/sizing.md, "Sizing guide"):
# the worker peaks at 193 MiB, a trivial flow run at 123 MiB; 160 leaves room for a flow's own imports.
WORKER_RSS_MIB = 200
FLOW_RUN_RSS_MIB = 160
USABLE_MEMORY = 0.9  # leave 10% for the runtime, page cache and a heavier-than-measured run
# With a limit, a worker takes at most `limit` runs per poll; polling every 5 s instead of Prefect's
# 10 s doubles how fast a burst of runs drains and shortens the wait for a due run (measured over 20
# runs, p50 / p95 6.3 s / 8.2 s against 8.1 s / 11.2 s at 10 s).
WORKER_QUERY_SECONDS = 5
# The prefecthq/prefect image has no curl or wget: probe the worker's /health with python.
HEALTH_PROBE = (
    "import sys, urllib.request; "
    f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{HEALTH_PORT}/health', timeout=5).status == 200 else 1)"
)


@dataclass(frozen=True, kw_only=True)
class AgentServiceArgs:
    """What the ECS service needs from the other components."""

    image: pulumi.Input[str]  # digest-pinned image reference
    execution_role_arn: pulumi.Input[str]
    task_role_arn: pulumi.Input[str]
    # The Prefect credential's Secrets Manager `valueFrom` (never the value), filling `credential_env`; None: none.
    api_key_value_from: pulumi.Input[str] | None
    prefect_api_url: str
    work_pool: str
    log_level: str
    cluster_arn: pulumi.Input[str]
    log_group_name: pulumi.Input[str]
    size: TaskSize
    cpu_architecture: str
    desired_count: int
    subnet_ids: pulumi.Input[list[str]]
    security_group_ids: pulumi.Input[list[str]]
    assign_public_ip: bool
    worker_type: str = "process"  # the work pool's type: "process" or "ecs"
    capacity: str = "FARGATE"  # the worker's capacity provider: FARGATE or FARGATE_SPOT
    # What the workers need before they start (the work pool and its IAM). The service depends on them,
    # so `pulumi destroy` stops the workers first: a running worker would otherwise create its pool
    # again right after the pool is deleted.
    needs: Sequence[pulumi.Resource] = ()
    observer_queue_name: str | None = None  # an `ecs` worker's observer queue (EcsTaskEvents)
    repository_credentials_arn: str | None = None  # a non-ECR image's registry login (Secrets Manager ARN)
    credential_env: str = "PREFECT_API_KEY"  # or PREFECT_API_AUTH_STRING (config prefectApiAuthString)
    # Application Auto Scaling owns the desired count (components/worker_scaling.py): `desired_count` is the
    # first one only, and `pulumi up` leaves the count the scaling policy set alone.
    scaled: bool = False


# prefect-aws's ECS worker always starts its observer (its `..._OBSERVER_ENABLED` setting is read
# nowhere in prefect-aws 0.7.12), which follows flow-run tasks through the stack's SQS queue that
# EventBridge fills (EcsTaskEvents), found by this setting's name. It reads the setting once, when
# prefect_aws.observers.ecs is imported, and gives up for good if the queue does not exist then.
ECS_OBSERVER_QUEUE_SETTING = "PREFECT_INTEGRATIONS_AWS_ECS_OBSERVER_SQS_QUEUE_NAME"


def ecs_worker_environment(observer_queue_name: str) -> list[dict[str, str]]:
    """What an `ecs` worker adds to its environment: its observer's queue."""
    return [{"name": ECS_OBSERVER_QUEUE_SETTING, "value": observer_queue_name}]


def service_capacity(capacity: str) -> dict[str, Any]:
    """The Service's placement arguments: on demand the FARGATE launch type, on Spot a capacity
    provider strategy (ECS refuses both at once)."""
    if capacity == "FARGATE":
        return {"launch_type": "FARGATE"}
    strategy = aws.ecs.ServiceCapacityProviderStrategyArgs(capacity_provider=capacity, weight=1)
    return {"capacity_provider_strategies": [strategy]}


def run_limit(memory_mib: int) -> int:
    """How many flow runs at once fit next to the worker in a task of `memory_mib` (at least one)."""
    return max(1, int((memory_mib * USABLE_MEMORY - WORKER_RSS_MIB) // FLOW_RUN_RSS_MIB))


def worker_command(work_pool: str, worker_type: str = "process", limit: int | None = None) -> list[str]:
    """The worker's command line, run without a shell; `worker_type` is the pool's type, `limit` caps
    concurrent flow runs (a process worker's runs share the task's memory). A process worker runs behind
    the supervisor, which hands its runs in flight over on a stop; an ECS worker's runs are tasks of
    their own, which outlive it."""
    supervisor = [
        "python",
        SUPERVISOR_PATH,
        "--stop-timeout",
        str(STOP_TIMEOUT_SECONDS),
        "--hand-back-seconds",
        str(HAND_BACK_SECONDS),
        "--",
    ]
    return [
        *(supervisor if worker_type == "process" else []),
        "prefect",
        "worker",
        "start",
        "--pool",
        work_pool,
        "--type",
        worker_type,
        "--with-healthcheck",
        "--install-policy",
        "never",
        # The pool is `pulumi up`'s: a worker that finds none logs "not found" and keeps polling instead
        # of making one of its own type (prefect/workers/_worker_channel/_sync.py, _sync_rest_work_pool).
        "--no-create-pool-if-not-found",
        *(["--limit", str(limit)] if limit is not None else []),
    ]


def worker_container(
    *,
    image: str,
    api_key_value_from: str | None,
    prefect_api_url: str,
    work_pool: str,
    log_level: str,
    log_group_name: str,
    region: str,
    worker_type: str = "process",
    memory_mib: int | None = None,
    observer_queue_name: str | None = None,
    repository_credentials_arn: str | None = None,
    credential_env: str = "PREFECT_API_KEY",
    scaled: bool = False,
) -> dict[str, Any]:
    """The worker's container definition, as ECS's RegisterTaskDefinition takes it; a process worker in a
    task of `memory_mib` gets the --limit that fits. A `scaled` service's worker protects its task from
    scale-in while runs are in flight (agent_image/task_protection.py)."""
    limit = run_limit(memory_mib) if worker_type == "process" and memory_mib is not None else None
    return {
        "name": CONTAINER_NAME,
        "image": image,
        **(
            {"repositoryCredentials": {"credentialsParameter": repository_credentials_arn}}
            if repository_credentials_arn
            else {}
        ),
        "essential": True,
        "command": worker_command(work_pool, worker_type, limit),
        "environment": [
            {"name": "PREFECT_API_URL", "value": prefect_api_url},
            {"name": "PREFECT_LOGGING_LEVEL", "value": log_level},
            {"name": "PREFECT_WORKER_WEBSERVER_HOST", "value": "127.0.0.1"},
            {"name": "PREFECT_WORKER_WEBSERVER_PORT", "value": str(HEALTH_PORT)},
            {"name": "PREFECT_WORKER_QUERY_SECONDS", "value": str(WORKER_QUERY_SECONDS)},
            *({"name": name, "value": value} for name, value in FLOW_RUN_ENVIRONMENT.items()),
            *(ecs_worker_environment(observer_queue_name) if observer_queue_name else []),
            *([{"name": TASK_PROTECTION_ENV, "value": "true"}] if scaled else []),
        ],
        "secrets": [{"name": credential_env, "valueFrom": api_key_value_from}] if api_key_value_from else [],
        "healthCheck": {
            "command": ["CMD", "python", "-c", HEALTH_PROBE],
            "interval": 30,
            "timeout": 10,
            "retries": 3,
            "startPeriod": 60,
        },
        "stopTimeout": STOP_TIMEOUT_SECONDS,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group_name,
                "awslogs-region": region,
                "awslogs-stream-prefix": "worker",
            },
        },
    }


class AgentService(pulumi.ComponentResource):
    """Task definition and service for one Prefect worker, in the cluster it is given."""

    TYPE = "prefect-fargate:ecs:AgentService"

    task_definition: aws.ecs.TaskDefinition
    """The worker's task definition; a new revision per image, key or setting change."""
    service: aws.ecs.Service
    """The ECS service keeping `desired_count` workers running."""

    def __init__(self, name: str, args: AgentServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region

        container_definitions = pulumi.Output.all(
            image=args.image, value_from=args.api_key_value_from, log_group=args.log_group_name, region=region
        ).apply(
            lambda v: json.dumps(
                [
                    worker_container(
                        image=v["image"],
                        api_key_value_from=v["value_from"],
                        prefect_api_url=args.prefect_api_url,
                        work_pool=args.work_pool,
                        log_level=args.log_level,
                        log_group_name=v["log_group"],
                        region=v["region"],
                        worker_type=args.worker_type,
                        memory_mib=args.size.memory,
                        observer_queue_name=args.observer_queue_name,
                        repository_credentials_arn=args.repository_credentials_arn,
                        credential_env=args.credential_env,
                        scaled=args.scaled,
                    )
                ]
            )
        )
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=name,
            cpu=str(args.size.cpu),
            memory=str(args.size.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture=args.cpu_architecture
            ),
            execution_role_arn=args.execution_role_arn,
            task_role_arn=args.task_role_arn,
            container_definitions=container_definitions,
            opts=child,
        )
        self.service = aws.ecs.Service(
            f"{name}-svc",
            cluster=args.cluster_arn,
            task_definition=self.task_definition.arn,
            desired_count=args.desired_count,
            # No force_new_deployment: the AWS provider sends ForceNewDeployment with *every* update of
            # a service that has it (terraform-provider-aws internal/service/ecs/service.go,
            # resourceServiceUpdate: `ForceNewDeployment: d.Get("force_new_deployment")`), so a new
            # desiredCount, subnet or security group would replace every running worker. Without it:
            # - a new task definition (image, credential version, size, settings) is an UpdateService
            #   with the new taskDefinition, which ECS rolls out by itself;
            # - a new workerCapacity changes the capacity provider strategy, which the provider then
            #   plans as a replacement of the service (capacityProviderStrategyCustomizeDiff forces a
            #   new service on any strategy change without force_new_deployment, and on FARGATE's
            #   launch type <-> a strategy even with it): Pulumi creates the new service on the new
            #   capacity, waits for it to be steady, then deletes the old one, whose tasks get
            #   ECS's SIGTERM (the worker's stop path);
            # - desiredCount and the rest are UpdateService fields that start no deployment (ECS itself
            #   starts new tasks for a new network configuration). With minWorkers/maxWorkers Application
            #   Auto Scaling owns desiredCount (`scaled`): `ignore_changes` keeps `pulumi up` from resetting it.
            **service_capacity(args.capacity),
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.subnet_ids,
                security_groups=args.security_group_ids,
                assign_public_ip=args.assign_public_ip,
            ),
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            wait_for_steady_state=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.needs),
                ignore_changes=["desiredCount"] if args.scaled else None,
            ),
        )
        self.register_outputs({"service_name": self.service.name, "task_definition_arn": self.task_definition.arn})
