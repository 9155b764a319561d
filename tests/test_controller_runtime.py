"""The stack controller's handler against a real local Prefect server (moto for Secrets Manager and ECS), called
in-process as the Lambda runtime calls it (controller/handler.py).

- A process worker started from the task definition, in an ECS task (moto's, RUNNING; its metadata endpoint
  answered on loopback), is killed outright mid-run (SIGKILL to its whole tree, as an out-of-memory kill or a lost
  host ends a task), and ECS stops its task: the run with `retries=1` is handed back and COMPLETES on a
  replacement worker with run_count 2; the run with `retries=0` ends CRASHED with the controller's message. Before
  ECS reports the task stopped, nothing is done.
- Heartbeats blocked for ten minutes (the worker's events websocket goes through a dead proxy) while the runs are
  healthy and the controller runs every minute: no state changes; the controller fails every minute once their
  silence could matter, which is what raises its alarm.
- What it may touch: only this pool's runs are selected (another pool's run and a local run, RUNNING and silent as
  long, are never changed); a run in a final state is refused by the server; a stuck Pending run is handed back
  whatever its retries. Its requests are read-only but for set_state, and never `get_scheduled_flow_runs`.
- A run crashed by prefect-aws's ECS observer (its own handler, called with ECS's event) is re-run through
  orchestration with force false; a FAILED run, a run crashed by its flow and another pool's crashed run are not.
- A server with PREFECT_SERVER_API_DEFAULT_LIMIT 50 is paged at 50; heartbeats are read one per run, every page.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import boto3
import conftest
import pytest
from conftest import API_KEY, deployments_in_new_pools
from ecs_task_event import task_stopped_detail

from controller import handler, recovery
from controller.context import build_context
from controller.prefect_rest import PAGE
from devtools.harness import Cluster, events_blocked, local_cluster, server_only_cluster, wait_for

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 240
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SILENCE = 900  # the stack's (components/stack_controller.py): five of the flow runs' 180 s beats
READ_ONLY = {
    ("POST", "/flow_runs/filter"),
    ("POST", "/events/filter"),
    ("GET", "/events/filter/next"),
    ("GET", "/flow_runs/{id}"),
    ("GET", "/flow_run_states/"),
    ("POST", "/flow_runs/count"),  # the backlog job (controller/backlog.py)
}
BEAT = "prefect.flow-run.heartbeat"


def controller_env(
    api_url: str, pool: str, cluster_arn: str, silence: int = SILENCE, pool_type: str = "process"
) -> dict[str, str]:
    """The function's environment as StackController sets it, pointed at the local server and moto's secret."""
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name=f"prefect-api-key-{pool}", SecretString=API_KEY)["ARN"]
    return conftest.controller_env(
        PREFECT_API_URL=api_url,
        PREFECT_CREDENTIAL_SECRET_ARN=arn,
        PREFECT_CREDENTIAL_ENV="PREFECT_API_KEY",
        WORK_POOL=pool,
        WORK_POOL_TYPE=pool_type,
        CLUSTER_ARN=cluster_arn,
        SILENCE_SECONDS=str(silence),
    )


@dataclass
class WorkerTasks:
    """The worker's ECS tasks in moto: one RUNNING per worker, stopped when its worker dies (ECS stops a task whose
    essential container exited). Moto would otherwise walk a task to STOPPED as it is described (moto/ecs/models.py,
    Task's state transitions): here a task runs until it is stopped."""

    ecs: Any
    cluster_arn: str
    task_definition: str

    def start(self) -> str:
        (task,) = self.ecs.run_task(
            cluster=self.cluster_arn, taskDefinition=self.task_definition, launchType="FARGATE"
        )["tasks"]
        return str(task["taskArn"])

    def stop(self, task_arn: str) -> None:
        self.ecs.stop_task(cluster=self.cluster_arn, task=task_arn, reason="Essential container in task exited")

    def status(self, task_arn: str) -> str:
        return str(self.ecs.describe_tasks(cluster=self.cluster_arn, tasks=[task_arn])["tasks"][0]["lastStatus"])


@pytest.fixture
def worker_tasks(aws_env: None) -> Iterator[WorkerTasks]:
    from moto.moto_api import state_manager

    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
    ecs = boto3.client("ecs")
    cluster_arn = ecs.create_cluster(clusterName="prefect-worker-cluster")["cluster"]["clusterArn"]
    definition = ecs.register_task_definition(
        family="prefect-worker",
        networkMode="bridge",  # moto cannot attach a task's network interface (awsvpc)
        cpu="512",
        memory="1024",
        containerDefinitions=[{"name": "prefect-worker", "image": "agent", "memory": 1024}],
    )["taskDefinition"]["taskDefinitionArn"]
    yield WorkerTasks(ecs, cluster_arn, definition)
    state_manager.unset_transition("ecs::task")


def endpoint(url: str, api_url: str) -> str:
    """`/flow_runs/{id}` for `/flow_runs/<uuid>`; the query left out."""
    return UUID_TEXT.sub("{id}", url.removeprefix(api_url).split("?", 1)[0])


def check_requests(sent: list[tuple[str, str, str, bytes | None]], api_url: str, acted_on: set[str]) -> None:
    """Read-only but for set_state on `acted_on`; never a worker poll; the key sent as Prefect's client sends it."""
    assert sent, "the controller sent nothing"
    assert not [url for _, url, *_ in sent if "get_scheduled_flow_runs" in url or "/work_pools/" in url]
    writes = {url.removeprefix(api_url) for method, url, *_ in sent if url.endswith("/set_state")}
    assert writes == {f"/flow_runs/{run_id}/set_state" for run_id in acted_on}
    others = {(m, endpoint(url, api_url)) for m, url, *_ in sent if not url.endswith("/set_state")}
    assert others <= READ_ONLY, others - READ_ONLY
    assert {auth for _, _, auth, _ in sent} == {f"Bearer {API_KEY}"}


def history(cluster: Cluster, run_id: UUID) -> list[str]:
    with cluster.client() as client:
        return [state.type.value for state in client.read_flow_run_states(run_id)]


def _runs(cluster: Cluster, runs: dict[str, UUID]) -> dict[str, Any]:
    found = cluster.flow_runs(list(runs.values()))
    return {name: found[run_id] for name, run_id in runs.items()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie process is dead, only not yet reaped


# -- a worker killed outright -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with local_cluster() as c:
        yield c


@pytest.mark.long
def test_a_killed_workers_runs_are_retried_as_their_flow_allows_else_crashed(
    cluster: Cluster, worker_tasks: WorkerTasks, requests_sent: list[tuple[str, str, str, bytes | None]]
) -> None:
    task_arn = worker_tasks.start()
    worker = cluster.start_worker(task_arn=task_arn)
    wait_for(lambda: cluster.probe_health(worker.health_port) == 0 or not worker.alive(), 120, "worker healthy")
    one_retry = cluster.add_deployment("runtime_flows.py:sleep_first_attempt_retries_1", "recover-retries-1")
    no_retry = cluster.add_deployment("runtime_flows.py:sleep_first_attempt", "recover-retries-0")
    runs = {"retries-1": cluster.trigger(one_retry, {"seconds": 600}), "retries-0": cluster.trigger(no_retry)}
    wait_for(lambda: all(BEAT in cluster.run_events(r) for r in runs.values()), RUN_TIMEOUT, "a heartbeat of each")
    # Each run carries the name of the worker that submitted it: the supervisor named the worker after its task.
    assert {r.labels["prefect.worker.name"] for r in _runs(cluster, runs).values()} == {task_arn.replace("/", ":")}
    env = controller_env(cluster.api_url, cluster.work_pool, worker_tasks.cluster_arn)

    task = [worker.pid, *worker.tree()]
    worker.signal_group(signal.SIGKILL)
    worker.kill_leftovers()
    worker.wait(timeout=10)
    wait_for(lambda: not [pid for pid in task if _alive(pid)], 10, "every process of the task gone")

    handler.run_jobs(env)  # the processes are gone, but ECS does not report the task stopped yet: nothing is done
    assert {name: r.state.type.value for name, r in _runs(cluster, runs).items()} == {
        "retries-1": "RUNNING",
        "retries-0": "RUNNING",
    }
    worker_tasks.stop(task_arn)  # ECS stops a task whose essential container exited
    handler.run_jobs(env)  # the minute the schedule would run it next

    replacement_task = worker_tasks.start()
    replacement = cluster.start_worker(task_arn=replacement_task)
    try:
        final = cluster.wait_final(list(runs.values()), RUN_TIMEOUT)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {replacement.log()[-3000:]}") from None
    retried, crashed = final[runs["retries-1"]], final[runs["retries-0"]]
    assert (retried.state.type.value, retried.run_count) == ("COMPLETED", 2), retried.state
    assert retried.labels["prefect.worker.name"] == replacement_task.replace("/", ":")  # relabelled on the re-run
    assert "SCHEDULED" in history(cluster, runs["retries-1"])  # AwaitingRetry between the two attempts
    assert "CRASHED" not in history(cluster, runs["retries-1"])
    assert crashed.state.type.value == "CRASHED"
    assert crashed.state.message == (
        f"The ECS task of its worker {task_arn} stopped while the run was RUNNING; no retries left (1 attempt(s), "
        "retries=0) (prefect-fargate controller)."
    )
    check_requests(requests_sent, cluster.api_url, {str(run_id) for run_id in runs.values()})


@pytest.mark.long
def test_ten_minutes_without_heartbeats_change_no_healthy_run(
    cluster: Cluster,
    worker_tasks: WorkerTasks,
    requests_sent: list[tuple[str, str, str, bytes | None]],
    tmp_path: Path,
) -> None:
    """The worker's events never reach the server (events_blocked: its websocket goes to a dead proxy) while two
    runs stay healthy for ten minutes and the controller runs every minute. The silence is set to 150 s (the
    stack's old value, far shorter than the outage), so that silence alone would have judged both runs dead."""
    silence = 150
    pool = f"blocked-{uuid.uuid4().hex[:6]}"
    deployment = cluster.add_deployment("runtime_flows.py:sleep_first_attempt", f"blocked-{pool}", pool=pool)
    task_arn = worker_tasks.start()
    worker = cluster.start_worker(pool=pool, task_arn=task_arn, **events_blocked())
    release = tmp_path / "release"
    runs = {n: cluster.trigger(deployment, {"seconds": 1200, "release_file": str(release)}) for n in ("a", "b")}
    cluster.wait_running(list(runs.values()), RUN_TIMEOUT)
    env = controller_env(cluster.api_url, pool, worker_tasks.cluster_arn, silence=silence)

    started, failed_minutes, minutes = time.monotonic(), 0, 0
    while time.monotonic() - started < 10 * 60:
        minutes += 1
        try:
            handler.run_jobs(env)
        except handler.ControllerError:
            failed_minutes += 1
        time.sleep(max(0.0, started + minutes * 60 - time.monotonic()))
    assert worker.alive() and worker_tasks.status(task_arn) == "RUNNING"
    assert {name: r.state.type.value for name, r in _runs(cluster, runs).items()} == {"a": "RUNNING", "b": "RUNNING"}
    for run_id in runs.values():
        assert BEAT not in cluster.run_events(run_id), "a heartbeat reached the server"
        assert history(cluster, run_id) == ["SCHEDULED", "PENDING", "PENDING", "RUNNING"]
    # Every minute from the first whose window lies wholly after the runs started failed, saying why.
    assert minutes >= 10 and failed_minutes >= minutes - 4, (minutes, failed_minutes)
    check_requests(requests_sent, cluster.api_url, set())

    release.write_text("go")
    final = cluster.wait_final(list(runs.values()), RUN_TIMEOUT)
    assert {(r.state.type.value, r.run_count) for r in final.values()} == {("COMPLETED", 1)}


# -- what it may touch ------------------------------------------------------------------------------------------


def test_only_this_pools_dead_or_stuck_runs_are_changed_and_the_pool_is_not_polled(
    prefect_servers: Any, worker_tasks: WorkerTasks, requests_sent: list[tuple[str, str, str, bytes | None]]
) -> None:
    """Runs left RUNNING with no heartbeat at all, judged 20 minutes later (the clock given to the handler): this
    pool's, whose worker's task ECS reports STOPPED, is crashed; another pool's and a local run's (no pool:
    `python flow.py`, `flow.serve()`) are not even selected, so their silence does not matter however long it
    lasts, even labelled with the same stopped task."""
    from prefect import flow
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.states import Completed, Pending, Running

    server = prefect_servers[0]  # the session's open server: pools named per test
    ours, theirs = (f"{side}-{uuid.uuid4().hex[:8]}" for side in ("ours", "theirs"))
    stopped = worker_tasks.start()
    worker_tasks.stop(stopped)
    with SyncPrefectClient(server.url) as client:
        deployments = deployments_in_new_pools(client, "silent", "process", ours, theirs)
        runs = {
            name: client.create_flow_run_from_deployment(deployments[pool]).id
            for name, pool in (("dead", ours), ("stuck", ours), ("finished", ours), ("other-pool", theirs))
        }
        runs["local"] = client.create_flow_run(flow(name="silent")(lambda: None)).id  # as `python flow.py` makes it
        for name in ("dead", "finished", "other-pool", "local"):
            client.set_flow_run_state(runs[name], Pending())
            client.update_flow_run_labels(runs[name], {"prefect.worker.name": stopped.replace("/", ":")})  # a worker's
            assert client.set_flow_run_state(runs[name], Running()).status.value == "ACCEPT", name
        client.set_flow_run_state(runs["finished"], Completed())
        client.set_flow_run_state(runs["stuck"], Pending())  # never started: retries unknown, counted as 0

        env = controller_env(server.url, ours, worker_tasks.cluster_arn)
        later = lambda: datetime.now(UTC) + timedelta(minutes=20)  # noqa: E731
        handler.run_jobs(env, now=later)

        states = {name: client.read_flow_run(run_id).state for name, run_id in runs.items()}
        assert states["dead"].type.value == "CRASHED"
        assert states["dead"].message.startswith(f"The ECS task of its worker {stopped} stopped while the run")
        assert (states["stuck"].type.value, states["stuck"].name) == ("SCHEDULED", "AwaitingRetry")
        assert states["stuck"].message.startswith(f"Pending for 15 min in work pool {ours}")
        assert "it never started, so it is handed back (1 of 3)" in states["stuck"].message
        for name in ("other-pool", "local"):
            assert states[name].type.value == "RUNNING", name
            assert "CRASHED" not in [state.type.value for state in client.read_flow_run_states(runs[name])], name
        assert states["finished"].type.value == "COMPLETED"
        check_requests(requests_sent, server.url, {str(runs["dead"]), str(runs["stuck"])})
        assert client.read_work_pool(ours).status.value == "NOT_READY"

        # A run that reached a final state meanwhile: the server itself refuses the controller's CRASHED.
        ctx = build_context(env, print)
        result = ctx.prefect.set_state(str(runs["finished"]), {"type": "CRASHED", "name": "Crashed", "message": "x"})
        assert result["status"] == "ABORT"
        assert client.read_flow_run(runs["finished"]).state.type.value == "COMPLETED"


# -- runs crashed by infrastructure -------------------------------------------------------------------------------


def _observer_crashes(server_url: str, run_id: UUID, detail: dict[str, Any]) -> None:
    """prefect-aws's ECS observer's own handler, given the Task State Change event ECS would send for the run's task
    (prefect_aws/observers/ecs.py, `mark_runs_as_crashed`)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_aws.observers.ecs import mark_runs_as_crashed

    with temporary_settings({PREFECT_API_URL: server_url}):
        asyncio.run(mark_runs_as_crashed({"detail": detail}, {"prefect.io/flow-run-id": str(run_id)}))


def test_runs_crashed_by_infrastructure_are_rerun_without_force_and_no_other(
    prefect_servers: Any, worker_tasks: WorkerTasks, requests_sent: list[tuple[str, str, str, bytes | None]]
) -> None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRunPolicy
    from prefect.states import Crashed, Failed, Pending, Running

    server = prefect_servers[0]
    ours, theirs = (f"ecs-{side}-{uuid.uuid4().hex[:8]}" for side in ("ours", "theirs"))
    cluster_arn = worker_tasks.cluster_arn
    oom_exit = {
        **task_stopped_detail(cluster_arn, worker_tasks.start(), "Essential container in task exited", []),
        "stopCode": "EssentialContainerExited",
        "containers": [{"name": "prefect", "exitCode": 137, "lastStatus": "STOPPED", "reason": "OutOfMemoryError"}],
    }
    failed_to_start = task_stopped_detail(cluster_arn, worker_tasks.start(), "Capacity is unavailable", [])
    with SyncPrefectClient(server.url) as client:
        deployments = deployments_in_new_pools(client, "crashy", "ecs", ours, theirs)
        names = (("oom", ours), ("oom-last-try", ours), ("never-started", ours), ("failed", ours))
        names += (("flow-crash", ours), ("other-pool", theirs))
        runs = {name: client.create_flow_run_from_deployment(deployments[pool]).id for name, pool in names}
        for name, run_id in runs.items():
            client.set_flow_run_state(run_id, Pending())
            if name == "never-started":
                continue
            assert client.set_flow_run_state(run_id, Running()).status.value == "ACCEPT", name
            retries = 0 if name in ("oom-last-try", "failed") else 1  # what the flow's engine writes when it starts
            client.update_flow_run(run_id, empirical_policy=FlowRunPolicy(retries=retries))
        for name in ("oom", "oom-last-try", "other-pool"):
            _observer_crashes(server.url, runs[name], oom_exit)
        _observer_crashes(server.url, runs["never-started"], failed_to_start)
        client.set_flow_run_state(runs["failed"], Failed(message="ValueError: bad input"))
        client.set_flow_run_state(runs["flow-crash"], Crashed(message="Execution was aborted by an interrupt signal."))
        before = {name: client.read_flow_run(run_id).state for name, run_id in runs.items()}
        assert {name: s.type.value for name, s in before.items()} == {
            **dict.fromkeys(runs, "CRASHED"),
            "failed": "FAILED",
        }
        assert before["oom"].message == "The following containers stopped with a non-zero exit code: ['prefect']"
        assert before["never-started"].message.startswith("ECS task failed to start: Capacity is unavailable")

        env = controller_env(server.url, ours, cluster_arn, pool_type="ecs")
        handler.run_jobs(env)
        handler.run_jobs(env)  # a second minute: each crash is re-run once

        after = {name: client.read_flow_run(run_id) for name, run_id in runs.items()}
        rerun = {name for name, r in after.items() if r.state.name == "AwaitingRetry"}
        assert rerun == {"oom", "never-started"}
        assert after["oom"].state.message.startswith(
            "Crashed by infrastructure, not by its flow (The following containers stopped with a non-zero exit code:"
        )
        assert "handed back for attempt 2 of 2" in after["oom"].state.message
        assert "it never started, so it is handed back (1 of 3)" in after["never-started"].state.message
        for name in ("oom-last-try", "failed", "flow-crash", "other-pool"):
            assert after[name].state.id == before[name].id, name
    changes = [json.loads(body or b"{}") for _, url, _, body in requests_sent if url.endswith("/set_state")]
    assert [(c["state"]["name"], c["force"]) for c in changes] == [("AwaitingRetry", False)] * 2
    check_requests(requests_sent, server.url, {str(runs["oom"]), str(runs["never-started"])})


# -- a server that pages at a lower limit -------------------------------------------------------------------------


def test_a_server_with_a_lower_limit_is_read_whole_and_heartbeats_one_per_run(
    worker_tasks: WorkerTasks, requests_sent: list[tuple[str, str, str, bytes | None]]
) -> None:
    """A self-hosted server started with PREFECT_SERVER_API_DEFAULT_LIMIT=20: the controller's `limit: 200` is
    answered 422, after which every listing is paged at 20 and read whole (45 stuck runs, all handed back). And 45
    runs with three heartbeats each are read as 45 events, one per run, over three pages (at the 20 the client
    learned: /events/filter itself takes up to 50)."""
    from prefect.states import Pending

    count, limit = 45, 20
    with server_only_cluster("prefect-limit-", PREFECT_SERVER_API_DEFAULT_LIMIT=str(limit)) as cluster:
        pool = "low-limit"
        with cluster.client() as client:
            deployment = deployments_in_new_pools(client, "paged", "process", pool)[pool]
            run_ids = [client.create_flow_run_from_deployment(deployment).id for _ in range(count)]
            for run_id in run_ids:
                client.set_flow_run_state(run_id, Pending())
            now = datetime.now(UTC)
            beats = [
                {
                    "id": str(uuid.uuid4()),
                    "occurred": (now - timedelta(seconds=30 * k)).isoformat(),
                    "event": BEAT,
                    "resource": {"prefect.resource.id": f"prefect.flow-run.{run_id}"},
                }
                for run_id in run_ids
                for k in range(3)
            ]
            client.request("POST", "/events", json=beats)

        env = controller_env(cluster.api_url, pool, worker_tasks.cluster_arn)
        handler.run_jobs(env, now=lambda: datetime.now(UTC) + timedelta(minutes=20))
        states = [
            r.state.name for n in range(0, count, limit) for r in cluster.flow_runs(run_ids[n : n + limit]).values()
        ]
        assert states == ["AwaitingRetry"] * count
        listings = [
            json.loads(body)
            for _, url, _, body in requests_sent
            if url.endswith("/flow_runs/filter") and body and b'"state": {"type"' in body
        ]
        pending = [(b["limit"], b["offset"]) for b in listings if "PENDING" in b["flow_runs"]["state"]["type"]["any_"]]
        assert pending == [(PAGE, 0), (limit, 0), (limit, 20), (limit, 40)]

        ctx = build_context(env, print)
        assert len(ctx.prefect.pool_runs(pool, ["SCHEDULED"])) == count and ctx.prefect.max_limit == limit
        ids = [str(run_id) for run_id in run_ids]
        since, until = (now - timedelta(minutes=5)).isoformat(), (now + timedelta(minutes=1)).isoformat()
        wait_for(
            lambda: ctx.prefect.runs_heard_from(ids, recovery.HEARTBEAT, since, until) == set(ids),
            60,
            "every run's heartbeats stored",
        )
        requests_sent.clear()
        assert ctx.prefect.runs_heard_from(ids, recovery.HEARTBEAT, since, until) == set(ids)
        pages = [(m, endpoint(url, cluster.api_url)) for m, url, *_ in requests_sent]
        assert pages == [("POST", "/events/filter"), ("GET", "/events/filter/next"), ("GET", "/events/filter/next")]
