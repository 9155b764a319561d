"""A Spot interruption of an `ecs` flow-run task, against a real local Prefect server.

The pool's Spot template is created on the server; prefect-aws's ECS worker turns a deployment's
flow run into its RunTask request (AWS is moto's, RunTask answered after botocore checked its
shape); the task's command and environment from that request are then run here as ECS would run
the container, and stopped as ECS stops a task for a Spot interruption: SIGTERM to the command's
process group (what the image's `tini -g` forwards), SIGKILL for whatever is left after the stop
timeout. The run goes back to Scheduled, and the task the worker starts for it next completes it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import name_values, record_aws_calls
from ecs_submissions import moto_pool_template

from devtools.harness import Cluster, Process, server_only_cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.long]

TESTS = Path(__file__).resolve().parent
POOL = "spot-pool"
KEY = "pnu_SpotTestKey0123456789"  # the secret ECS injects; the local server has no auth and ignores it
STOP_TIMEOUT = 120  # Fargate's longest stopTimeout; a Spot task gets two minutes' notice


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with server_only_cluster("prefect-spot-") as local:
        yield local


def _spot_task_request(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict[str, Any]]:
    """A flow run of a deployment in the Spot pool, and the RunTask request the ECS worker makes for it."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
    from prefect_aws.workers.ecs_worker import ECSJobConfiguration, ECSWorker

    template = moto_pool_template("prefect-fargate-test-flow-run", capacity="FARGATE_SPOT")
    calls = record_aws_calls(monkeypatch)

    async def submit() -> Any:
        async with PrefectClient(cluster.api_url) as client:
            await client.create_work_pool(WorkPoolCreate(name=POOL, type="ecs", base_job_template=template))
            flow_id = await client.create_flow_from_name("sleep-first-attempt")
            deployment_id = await client.create_deployment(
                flow_id=flow_id,
                name="spot",
                work_pool_name=POOL,
                entrypoint="runtime_flows.py:sleep_first_attempt",
                pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(TESTS)}}],
            )
            flow_run = await client.create_flow_run_from_deployment(deployment_id)
            configuration = await ECSJobConfiguration.resolve_for_flow_run(
                flow_run, client=client, work_pool=await client.read_work_pool(POOL), worker_name="spot-worker"
            )
            await asyncio.to_thread(
                ECSWorker(work_pool_name=POOL)._prepare_and_create_task,
                logging.getLogger("test"),
                configuration.aws_credentials.get_client("ecs"),
                configuration,
                flow_run,
            )
            return flow_run

    with temporary_settings({PREFECT_API_URL: cluster.api_url, PREFECT_API_KEY: KEY}):  # as in the worker's task
        flow_run = asyncio.run(submit())
    monkeypatch.undo()
    (run_task,) = [params for _, operation, params in calls if operation == "RunTask"]
    return flow_run, run_task


def _start_task(cluster: Cluster, run_task: dict[str, Any], name: str) -> Process:
    """The flow-run container as ECS starts it: the request's command, with its environment overrides
    and the task definition's secret."""
    (container,) = run_task["overrides"]["containerOverrides"]
    env = {**cluster.base_env(), **name_values(container["environment"]), "PREFECT_API_KEY": KEY}
    return Process.start(name, list(container["command"]), env, cluster.logs)


def _state(cluster: Cluster, flow_run_id: Any) -> Any:
    with cluster.client() as client:
        return client.read_flow_run(flow_run_id).state


def test_spot_interruption_puts_the_run_back_and_the_next_task_completes_it(
    cluster: Cluster, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow_run, run_task = _spot_task_request(cluster, monkeypatch)
    assert run_task["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    (container,) = run_task["overrides"]["containerOverrides"]
    assert name_values(container["environment"])["PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"] == "reschedule"

    first = _start_task(cluster, run_task, "spot-task-1")
    try:
        wait_for(lambda: _state(cluster, flow_run.id).is_running(), 120, f"run RUNNING\n{first.log()[-3000:]}")
        time.sleep(2)  # inside the flow's sleep
        interrupted = time.monotonic()
        first.tree()  # remember the task's processes, to end any left at the stop timeout
        first.signal_group(signal.SIGTERM)
        try:
            exit_code = first.wait(timeout=STOP_TIMEOUT)
        except Exception:
            exit_code = None
        stopped_in = time.monotonic() - interrupted
    finally:
        first.kill_leftovers()
    state = _state(cluster, flow_run.id)
    print(f"first task: exit {exit_code} after {stopped_in:.1f} s of the {STOP_TIMEOUT} s notice; run {state.name}")
    assert exit_code == 0, first.log()[-3000:]
    assert state.is_scheduled() and state.name == "AwaitingRetry", (state, first.log()[-3000:])
    assert "Flow run successfully rescheduled" in first.log()

    second = _start_task(cluster, run_task, "spot-task-2")
    try:
        assert second.wait(timeout=300) == 0, second.log()[-3000:]
    finally:
        second.kill_leftovers()
    state = _state(cluster, flow_run.id)
    assert state.is_completed(), (state, second.log()[-3000:])
    with cluster.client() as client:
        assert client.read_flow_run(flow_run.id).run_count == 2  # the interrupted attempt, then this one
