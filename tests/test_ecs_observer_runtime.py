"""prefect-aws's ECS observer, run by the real worker, on the queue this stack declares.

The worker starts with the command and environment of the `ecs` worker's rendered container
definition, against the local Prefect server and a moto server holding what the program declares
(queues, rule, target, queue policy) and two ECS clusters. A flow run is PENDING once the worker has
started its task; here each run is put in PENDING with a task tagged as the ECS worker tags it
(moto cannot start an awsvpc Fargate task, so the task is started with boto3, not by the worker).
ECS Task State Change events, in AWS's documented format, go through moto's EventBridge, whose rule
delivers them to the queue.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from conftest import API_KEY, Run, run_program
from ecs_task_event import capacity_failure, create_observer_aws, image_pull_failure, send_task_event
from test_ecs_pool import ECS_CONFIG, _job_configuration, pool_inputs

from devtools.harness import AWS_REGION, Cluster, local_cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.long]


def _pending_run(cluster: Cluster, deployment_id: uuid.UUID) -> uuid.UUID:
    """A run as the ECS worker leaves it once it has started the run's task: PENDING."""
    from prefect.states import Pending

    with cluster.client() as client:
        return client.create_flow_run_from_deployment(deployment_id, state=Pending()).id


def _worker_tags(cluster: Cluster, program: Run, flow_run_id: uuid.UUID, task_definition: str) -> list[dict[str, str]]:
    """The tags prefect-aws's ECS worker puts on a run's task, from the program's pool template (the
    observer finds the run by `prefect.io/flow-run-id` and names it and its deployment by the others)."""
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
    from prefect_aws.workers.ecs_worker import ECSWorker

    configuration = _job_configuration(pool_inputs(program)["base_job_template"])
    with cluster.client() as client:
        flow_run = client.read_flow_run(flow_run_id)
        deployment = client.read_deployment(flow_run.deployment_id)
        flow = client.read_flow(flow_run.flow_id)
        work_pool = client.read_work_pool(cluster.work_pool)
    with temporary_settings({PREFECT_API_URL: cluster.api_url, PREFECT_API_KEY: API_KEY}):
        configuration.prepare_for_flow_run(flow_run, deployment, flow, work_pool, "ecs-worker")
    worker = ECSWorker(work_pool_name=cluster.work_pool)
    return worker._prepare_task_run_request(configuration, {}, task_definition, False)["tags"]


def _start_task(ecs: Any, cluster_arn: str, task_definition: str, tags: list[dict[str, str]]) -> str:
    """The run's Fargate task, tagged as the worker tags it."""
    (task,) = ecs.run_task(cluster=cluster_arn, taskDefinition=task_definition, launchType="FARGATE", tags=tags)[
        "tasks"
    ]
    return str(task["taskArn"])


def _messages(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def test_runs_whose_task_failed_to_start_end_crashed_with_the_reason_for_this_cluster_only() -> None:
    from prefect.client.schemas.actions import WorkPoolCreate

    program = run_program(ECS_CONFIG)
    with local_cluster(deploy=False) as cluster:
        cluster.container = program.container()  # the `ecs` worker's command and environment
        endpoint = {
            "endpoint_url": cluster.s3_url,  # the moto server: every AWS service, on loopback
            "region_name": AWS_REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        sqs, events, ecs = (boto3.client(service, **endpoint) for service in ("sqs", "events", "ecs"))  # type: ignore[call-overload]
        created = create_observer_aws(program, sqs, events)
        declared = program.one("aws:ecs/cluster:Cluster").outputs
        this_cluster = ecs.create_cluster(clusterName=declared["name"])["cluster"]["clusterArn"]
        assert this_cluster == declared["arn"]  # the ARN the rule was rendered with
        other_cluster = ecs.create_cluster(clusterName="another-stacks-cluster")["cluster"]["clusterArn"]
        task_definition = ecs.register_task_definition(
            family="prefect_fargate-pool",
            networkMode="bridge",  # moto cannot attach a task's network interface (awsvpc)
            cpu="1024",
            memory="2048",
            containerDefinitions=[{"name": "prefect", "image": "agent:missing", "memory": 2048}],
        )["taskDefinition"]["taskDefinitionArn"]

        with cluster.client() as client:
            client.create_work_pool(WorkPoolCreate(name=cluster.work_pool, type="ecs"))
            flow_id = client.create_flow_from_name("nightly-load")
            deployment_id = client.create_deployment(
                flow_id=flow_id, name="nightly-load", work_pool_name=cluster.work_pool, entrypoint="load.py:load"
            )
        pull, capacity, elsewhere = (_pending_run(cluster, deployment_id) for _ in range(3))
        tags = {run: _worker_tags(cluster, program, run, task_definition) for run in (pull, capacity, elsewhere)}
        assert {"key": "prefect.io/flow-run-id", "value": str(pull)} in tags[pull]
        pull_event = image_pull_failure(this_cluster, _start_task(ecs, this_cluster, task_definition, tags[pull]))
        capacity_task = _start_task(ecs, this_cluster, task_definition, tags[capacity])
        capacity_event = capacity_failure(this_cluster, capacity_task)
        other_task = _start_task(ecs, other_cluster, task_definition, tags[elsewhere])
        other_event = capacity_failure(other_cluster, other_task)

        worker = cluster.start_worker()
        send_task_event(events, other_event)  # first: the observer reads in order, so it would be seen first
        send_task_event(events, pull_event)
        send_task_event(events, capacity_event)

        try:
            final = cluster.wait_final([pull, capacity], timeout=120)
        except TimeoutError as exc:
            raise AssertionError(f"runs not resolved; worker log:\n{worker.log()[-4000:]}") from exc
        assert {run.state.type.value for run in final.values()} == {"CRASHED"}
        # No container ever started: the reason is in the state's message.
        assert capacity_event["stoppedReason"] in final[capacity].state.message
        # The container was listed but never ran: the state names it, the run's logs carry the reason.
        assert "prefect" in final[pull].state.message
        wait_for(lambda: pull_event["stoppedReason"] in cluster.run_logs(pull), 30, "the pull error in the run's logs")

        # Every message handled and deleted; the other cluster's event never reached the queue.
        wait_for(lambda: _messages(sqs, created.queue_url) == 0, 30, "the observer's queue drained")
        assert _messages(sqs, created.dead_letter_url) == 0
        (other,) = cluster.flow_runs([elsewhere]).values()
        assert other.state.type.value == "PENDING"
        assert worker.alive(), worker.log()[-3000:]
        assert "does not exist" not in worker.log()
