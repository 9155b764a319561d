"""The worker's runtime contract on real Prefect: what the task definition declares actually works.

A real Prefect API server, a moto S3 server and a webhook stand-in run on 127.0.0.1 (tests/harness.py).
Each test starts a worker with the command, environment and secrets that the Pulumi program renders,
so a change to `worker_container` or the image's pins is exercised here. Flow code reaches the bucket
by `prefect deploy` of flows/ and the worker pulls it from S3. No assertion here is about speed: the
timeouts only keep a broken run from hanging (speed lives in benchmarks/).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from conftest import API_KEY
from harness import Cluster, Process, local_cluster, wait_for
from prefect.client.schemas.objects import StateType
from prefect.states import Scheduled
from runtime_flows import FAILURE_MESSAGE

pytestmark = pytest.mark.slow

POST_SLACK = "post-slack/post-slack"
OUTAGE_SECONDS = 30
RUN_TIMEOUT = 180  # generous: a run that never resolves fails the test instead of hanging it


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One server, S3 emulator and webhook for the module (a fresh server takes ~13-20 s to come up)."""
    with local_cluster() as c:
        yield c


def _registered_workers(cluster: Cluster) -> int:
    with cluster.client() as client:
        return len(client.read_workers_for_work_pool(cluster.work_pool))


def start_ready_worker(cluster: Cluster) -> Process:
    """Start a worker as declared; return once its health check passes and it has registered with the pool."""
    assert not [w for w in cluster.workers if w.alive()], "a previous test left a worker running"
    before = _registered_workers(cluster)
    w = cluster.start_worker()
    wait_for(lambda: cluster.probe_health() == 0 or not w.alive(), 120, "worker healthy")
    wait_for(lambda: _registered_workers(cluster) > before or not w.alive(), 120, "worker registered")
    assert w.alive(), w.log()[-3000:]
    return w


@pytest.fixture
def worker(cluster: Cluster) -> Iterator[Process]:
    """A worker exactly as the task definition declares it, ready; stopped after the test."""
    w = start_ready_worker(cluster)
    yield w
    w.stop()


def _deployment_id(cluster: Cluster, entrypoint: str, name: str) -> UUID:
    try:
        return cluster.deployment(f"{entrypoint.rsplit(':', 1)[1].replace('_', '-')}/{name}").id
    except Exception:
        return cluster.add_deployment(entrypoint, name)


def _state(cluster: Cluster, run_id: UUID) -> StateType | None:
    run = cluster.flow_runs([run_id]).get(run_id)
    return run.state.type if run is not None and run.state is not None else None


def test_health_check_fails_without_worker_and_passes_once_it_polls(cluster: Cluster) -> None:
    assert cluster.probe_health() != 0, "the health check passed with no worker running"
    w = start_ready_worker(cluster)  # waits for the task definition's health check to pass
    w.stop()
    assert cluster.probe_health() != 0, "the health check still passes after the worker stopped"


def test_post_slack_posts_exactly_the_message_with_url_from_secret_block(cluster: Cluster, worker: Process) -> None:
    assert cluster.webhook is not None
    cluster.webhook.received.clear()
    cluster.save_secret("slack-webhook-url", cluster.webhook.url)
    run_id = cluster.trigger(cluster.deployment(POST_SLACK).id)
    runs = cluster.wait_final([run_id], RUN_TIMEOUT)
    assert runs[run_id].state.type == StateType.COMPLETED, cluster.run_logs(run_id)
    assert cluster.webhook.received == [{"text": "Hi from Prefect!"}]
    assert "pull_from_s3" in cluster.run_logs(run_id), "the flow code did not come from the S3 pull step"


def test_flow_importing_a_package_from_flows_requirements_completes(cluster: Cluster, worker: Process) -> None:
    """flows/requirements.txt is installed where the worker runs, as the image installs it (here through
    requirements-dev.txt), and a flow run that imports from it works with `--install-policy never`."""
    rows = [["nightly-etl", "ok"], ["backfill", "late"]]
    run_id = cluster.trigger(
        _deployment_id(cluster, "runtime_flows.py:tabulate_report", "tabulate-report"), {"rows": rows}
    )
    run = cluster.wait_final([run_id], RUN_TIMEOUT)[run_id]
    assert run.state.type == StateType.COMPLETED, cluster.run_logs(run_id)
    wait_for(lambda: "nightly-etl  ok" in cluster.run_logs(run_id), 60, "the table in the run's logs")


def test_failing_flow_ends_failed_with_its_error_logged_and_worker_serves_next_run(
    cluster: Cluster, worker: Process
) -> None:
    failing = cluster.trigger(_deployment_id(cluster, "runtime_flows.py:raise_error", "raise-error"))
    failed = cluster.wait_final([failing], RUN_TIMEOUT)[failing]
    assert failed.state.type == StateType.FAILED
    wait_for(lambda: FAILURE_MESSAGE in cluster.run_logs(failing), 60, "the error in the run's logs")
    nxt = cluster.trigger(_deployment_id(cluster, "runtime_flows.py:tiny", "tiny"), {"n": 1})
    assert cluster.wait_final([nxt], RUN_TIMEOUT)[nxt].state.type == StateType.COMPLETED
    assert worker.alive()


def test_sigterm_stops_an_idle_worker_within_stop_timeout(cluster: Cluster, worker: Process) -> None:
    stop_timeout = cluster.container["stopTimeout"]
    worker.signal_group(15)  # what ECS's stop does, through the image's `tini -g`
    worker.wait(timeout=stop_timeout)  # raises if it is still running when ECS would SIGKILL it
    assert cluster.probe_health() != 0


def test_sigterm_mid_run_stops_worker_within_stop_timeout_and_run_resolves(cluster: Cluster, worker: Process) -> None:
    """The run dies with the task; the flows' heartbeats stop and the zombie automation crashes it.

    The automation starts watching a run at its first heartbeat, so the stop comes once the server
    has one: a task stopped in the instant between RUNNING and that heartbeat leaves the run RUNNING
    (CI hit that instant once; the README's automation section says so)."""
    run_id = cluster.trigger(_deployment_id(cluster, "runtime_flows.py:sleep_for", "sleep-for"), {"seconds": 600})
    beat = "prefect.flow-run.heartbeat"
    wait_for(lambda: beat in cluster.run_events(run_id), RUN_TIMEOUT, "the run's first heartbeat")
    assert _state(cluster, run_id) == StateType.RUNNING
    worker.tree()  # remember the flow run's process, so the task's end can be simulated
    worker.signal_group(15)
    worker.wait(timeout=cluster.container["stopTimeout"])  # raises if ECS would have had to SIGKILL it
    worker.kill_leftovers()  # the container stops once its main process exits: everything in it dies
    try:
        run = cluster.wait_final([run_id], RUN_TIMEOUT)[run_id]
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; the run's events: {cluster.run_events(run_id)}") from None
    assert run.state.type == StateType.CRASHED, run.state


def test_api_outage_worker_reconnects_and_every_scheduled_run_completes(cluster: Cluster, worker: Process) -> None:
    tiny = _deployment_id(cluster, "runtime_flows.py:tiny", "tiny")
    due = datetime.now(UTC) + timedelta(seconds=20)  # past the worker's prefetch: due mid-outage
    ids = [cluster.trigger(tiny, {"n": n}, state=Scheduled(scheduled_time=due)) for n in range(5)]
    cluster.stop_server()
    time.sleep(OUTAGE_SECONDS)
    assert worker.alive(), "the worker gave up during the outage:\n" + worker.log()[-3000:]
    cluster.start_server()
    runs = cluster.wait_final(ids, RUN_TIMEOUT)
    assert {run.state.type for run in runs.values()} == {StateType.COMPLETED}
    assert {run.run_count for run in runs.values()} == {1}, "a run was started twice"
    assert worker.alive()


@pytest.mark.load
def test_load_100_deployments_200_runs_through_one_worker_none_lost_or_duplicated(cluster: Cluster) -> None:
    assert cluster.webhook is not None
    assert "--limit" in cluster.container["command"], "the declared worker has no concurrency limit"
    deployments = [cluster.add_deployment("runtime_flows.py:tiny", f"batch-{i:03d}") for i in range(100)]
    with cluster.client() as client:
        assert len({d.id for d in client.read_deployments() if d.name.startswith("batch-")}) == 100
    cluster.webhook.received.clear()
    ids = [cluster.trigger(deployments[n % 100], {"n": n, "sink_url": cluster.webhook.url}) for n in range(200)]
    w = start_ready_worker(cluster)
    try:
        runs = cluster.wait_final(ids, 900)
    finally:
        w.stop()
    unfinished = [f"{r.state.type.value}: {r.state.message}" for r in runs.values() if not r.state.is_completed()]
    assert not unfinished, f"{len(unfinished)} did not complete, e.g. {unfinished[:3]}\n{cluster.server_errors()}"
    assert sorted(item["n"] for item in cluster.webhook.received) == list(range(200)), "a run was lost or ran twice"
    assert len({run.id for run in runs.values()}) == 200


def test_rejected_credentials_fail_loudly_without_printing_the_key() -> None:
    """A server that requires another credential rejects the worker, which must say so and exit."""
    with local_cluster(auth_string="admin:the-right-password", deploy=False) as c:
        env = c.worker_env()
        env.pop("PREFECT_API_AUTH_STRING")  # the worker has only what the task definition gives it: the key
        w = Process.start("worker-rejected", list(c.container["command"]), env, c.logs)
        c.workers.append(w)
        try:
            code = w.wait(timeout=120)
        except Exception:
            w.stop()
            raise AssertionError("a rejected worker kept running:\n" + w.log()[-3000:]) from None
        output = w.log()
    assert code != 0
    assert "401 Unauthorized" in output, output[-3000:]  # Prefect's words for a rejected key or auth string
    assert API_KEY not in output
