"""Flow runs submitted through an `ecs` pool by prefect-aws's own ECS worker (its polling loop, on a
real Prefect server), with every AWS call it makes counted. AWS is moto's, in this process: the
caller provides it (the `aws_env` fixture, or `mock_aws` with dummy credentials), and RunTask is
answered after botocore checked its shape (conftest's record_aws_calls).

Used by tests/test_ecs_pool_scale.py and benchmarks/ecs_pool_bench.py.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import moto_ecs_network, record_aws_calls

from components.job_templates import ecs_base_job_template

BIG = {"cpu": 4096, "memory": 16384}  # what some deployments ask for instead of the pool's size
API_KEY = "pnu_ScaleTestKey0123456789"  # needed by prefect-aws with a key secret; the local server ignores it


@dataclass(frozen=True)
class Submission:
    """What one batch of runs cost in AWS calls."""

    deployments: int
    runs: int
    task_definitions: int  # distinct task definitions the runs need (the pool's size, and BIG)
    calls: Counter[str]
    registered_families: int
    crashed: int  # runs the worker could not submit (the local server's SQLite under load), no RunTask
    seconds: float

    def per_run(self, operation: str) -> float:
        """Calls per submitted run (one RunTask each)."""
        return self.calls[operation] / self.calls["RunTask"]


def moto_pool_template(
    family_prefix: str = "prefect-fargate-scale-flow-run", capacity: str = "FARGATE"
) -> dict[str, Any]:
    """This stack's `ecs` template on a moto network (the pool's size: 1024 CPU, 2048 MiB)."""
    vpc, subnet, group, cluster = moto_ecs_network()
    return ecs_base_job_template(
        cluster_arn=cluster,
        vpc_id=vpc,
        subnet_ids=[subnet],
        security_group_ids=[group],
        assign_public_ip=True,
        execution_role_arn="arn:aws:iam::123456789012:role/execution",
        task_role_arn="arn:aws:iam::123456789012:role/flow-run",
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/agent@sha256:" + "a" * 64,
        log_group_name="/prefect-fargate/test/prefect",
        region="us-east-1",
        api_key_value_from="arn:aws:secretsmanager:us-east-1:123456789012:secret:key-AbC123:::v1",
        cpu=1024,
        memory=2048,
        cpu_architecture="X86_64",
        flow_run_env={"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"},
        family_prefix=family_prefix,
        capacity=capacity,
    )


def stock_family_handling(template: dict[str, Any]) -> dict[str, Any]:
    """The same template with prefect-aws's own family handling: a family per deployment, no matching."""
    stock = copy.deepcopy(template)
    properties = stock["variables"]["properties"]
    properties["family"]["default"] = None
    properties["match_latest_revision_in_family"]["default"] = False
    stock["job_configuration"]["task_definition"]["family"] = "{{ family }}"
    return stock


async def _no_observer() -> None:
    """In place of prefect-aws's start_observer/stop_observer."""


def submit_through_pool(
    api_url: str,
    pool: str,
    template: dict[str, Any],
    *,
    deployments: int,
    runs: int,
    big_every: int,
    timeout: float = 600,
) -> Submission:
    """`deployments` deployments (every `big_every`-th one BIG), `runs` runs spread over them, all
    submitted by one ECSWorker polling the pool; returns its AWS calls."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
    from prefect_aws.workers import ecs_worker

    async def create_runs() -> None:
        async with PrefectClient(api_url) as client:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="ecs", base_job_template=template))
            flow_id = await client.create_flow_from_name(f"{pool}-flow")
            ids = [
                await client.create_deployment(
                    flow_id=flow_id,
                    name=f"deployment-{n}",
                    work_pool_name=pool,
                    entrypoint="flow.py:main",
                    job_variables=BIG if n % big_every == big_every - 1 else {},
                )
                for n in range(deployments)
            ]
            for n in range(runs):
                await client.create_flow_run_from_deployment(ids[n % deployments])

    async def count(client: PrefectClient, state: StateType) -> int:
        in_state = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[state])))
        return await client.count_flow_runs(
            flow_run_filter=in_state, work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool]))
        )

    async def drain() -> int:
        """Poll until no run of the pool is left Scheduled; the worker's exit waits for its submissions.
        Returns how many runs crashed instead (the local server's SQLite refusing a write under load)."""
        async with ecs_worker.ECSWorker(work_pool_name=pool, prefetch_seconds=60) as worker:
            await worker.sync_with_backend()
            deadline = time.monotonic() + timeout
            while await count(worker.client, StateType.SCHEDULED):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{runs} runs not all picked up in {timeout:.0f} s")
                await worker.get_and_submit_flow_runs()
                await asyncio.sleep(0.5)
        async with PrefectClient(api_url) as client:
            return await count(client, StateType.CRASHED)

    settings = {PREFECT_API_URL: api_url, PREFECT_API_KEY: API_KEY}
    with pytest.MonkeyPatch.context() as patch, temporary_settings(settings):
        patch.setattr(ecs_worker, "_TASK_DEFINITION_CACHE", {})  # a freshly started worker
        # The observer (SQS, through aiobotocore, which moto in-process cannot answer) submits nothing;
        # in the stack it finds no queue and stops (components/agent_service.py, ECS_OBSERVER_QUEUE).
        patch.setattr(ecs_worker, "start_observer", _no_observer)
        patch.setattr(ecs_worker, "stop_observer", _no_observer)
        asyncio.run(create_runs())
        started = time.monotonic()
        calls = record_aws_calls(patch)
        crashed = asyncio.run(drain())
        seconds = time.monotonic() - started
    counts = Counter(operation for service, operation, _ in calls if service == "ecs")
    families = {params["family"] for _, operation, params in calls if operation == "RegisterTaskDefinition"}
    return Submission(
        deployments=deployments,
        runs=runs,
        task_definitions=2 if deployments >= big_every else 1,
        calls=counts,
        registered_families=len(families),
        crashed=crashed,
        seconds=seconds,
    )
