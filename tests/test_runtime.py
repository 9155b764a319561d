"""The worker's runtime contract on real Prefect: what the task definition declares actually works.

A real Prefect API server, a moto S3 server and a webhook stand-in run on 127.0.0.1 (devtools/harness.py).
Each test starts a worker with the command, environment and secrets that the Pulumi program renders,
so a change to `worker_container` or the image's pins is exercised here. Flow code reaches the bucket
by `prefect deploy` of flows/ and the worker pulls it from S3. No assertion here is about speed: the
timeouts only keep a broken run from hanging (speed lives in benchmarks/).
"""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from conftest import API_KEY
from prefect.client.schemas.objects import StateType
from prefect.states import Scheduled
from runtime_flows import FAILURE_MESSAGE

from devtools.harness import Cluster, Process, StopResult, describe_live, local_cluster, wait_for

pytestmark = pytest.mark.slow

POST_SLACK = "post-slack/post-slack"
OUTAGE_SECONDS = 30
RUN_TIMEOUT = 180  # generous: a run that never resolves fails the test instead of hanging it
# The deadline the stop tests give the supervisor instead of the declared 120 s (the supervisor keeps its
# declared hand-back time of it), so a test waits seconds, not minutes; the logic is the same.
TEST_STOP_TIMEOUT = 30
# A "short" run waits for the test's release, given a second after the stop's SIGTERM, so it is in flight at
# the stop however long the others took to start on a loaded machine, and then finishes well inside the
# deadline; unreleased it would sleep past the deadline, be handed back and run twice, failing the test.
SHORT_RUN_CAP_SECONDS = 120


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One server, S3 emulator and webhook for the module (a fresh server takes ~13-20 s to come up)."""
    with local_cluster() as c:
        yield c


def _registered_workers(cluster: Cluster) -> int:
    with cluster.client() as client:
        return len(client.read_workers_for_work_pool(cluster.work_pool))


def start_ready_worker(cluster: Cluster, **overrides: int) -> Process:
    """Start a worker as declared; return once its health check passes and it has registered with the pool."""
    before = _registered_workers(cluster)
    w = cluster.start_worker(**overrides)
    assert w.health_port is not None
    wait_for(lambda: cluster.probe_health(w.health_port) == 0 or not w.alive(), 120, "worker healthy")
    wait_for(lambda: _registered_workers(cluster) > before or not w.alive(), 120, "worker registered")
    assert w.alive(), w.log()[-3000:]
    return w


@pytest.fixture
def worker(cluster: Cluster) -> Iterator[Process]:
    """A worker exactly as the task definition declares it, ready; stopped after the test."""
    assert not [w for w in cluster.workers if w.alive()], "a previous test left a worker running"
    w = start_ready_worker(cluster)
    yield w
    w.stop()


@pytest.fixture
def stoppable_worker(cluster: Cluster) -> Iterator[Process]:
    """A worker as declared but told a short stop deadline (TEST_STOP_TIMEOUT); every worker ended after the test."""
    assert not [w for w in cluster.workers if w.alive()], "a previous test left a worker running"
    yield start_ready_worker(cluster, stop_timeout=TEST_STOP_TIMEOUT)
    for w in cluster.workers:
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
    w = start_ready_worker(cluster)  # waits for the task definition's health check to pass
    assert w.health_port is not None
    w.stop()
    assert cluster.probe_health(w.health_port) != 0, "the health check still passes after the worker stopped"


def test_health_check_fails_when_the_worker_exits_under_the_supervisor(cluster: Cluster, worker: Process) -> None:
    """The probe reads the worker itself, and a worker that dies takes the container down so ECS replaces it."""
    assert worker.health_port is not None
    inner = [pid for pid in worker.tree() if "worker" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]
    assert inner, "no `prefect worker start` under the supervisor"
    os.kill(inner[0], signal.SIGKILL)
    assert worker.wait(timeout=60) != 0, "the supervisor hid the worker's death"
    assert cluster.probe_health(worker.health_port) != 0


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


def _attempts(cluster: Cluster, run_id: UUID) -> list[str]:
    return [line for line in cluster.run_logs(run_id).splitlines() if line.startswith("attempt ")]


def test_declared_stop_deadline_is_fargates_maximum(cluster: Cluster) -> None:
    assert cluster.container["stopTimeout"] == 120
    command = cluster.container["command"]
    assert command[command.index("--stop-timeout") + 1] == "120", "the supervisor is told another deadline"


def test_sigterm_stops_an_idle_worker_within_stop_timeout(cluster: Cluster, worker: Process) -> None:
    assert worker.health_port is not None
    stop = worker.ecs_stop(cluster.container["stopTimeout"])
    assert stop.exited_in_time, "ECS would have had to SIGKILL an idle worker"
    assert not stop.processes_left
    assert cluster.probe_health(worker.health_port) != 0


def _stop_releasing(worker: Process, release: Path) -> StopResult:
    """ECS's stop of `worker` with the test's deadline; the short runs are released a second into it."""
    timer = threading.Timer(1.0, release.touch)
    timer.start()
    try:
        return worker.ecs_stop(TEST_STOP_TIMEOUT)
    finally:
        timer.cancel()


@pytest.mark.long  # in CI's own `-m long` run: keeps the default run short
def test_ecs_stop_short_run_finishes_in_place_and_long_run_completes_on_the_replacement(
    cluster: Cluster, stoppable_worker: Process
) -> None:
    """ECS's stop: SIGTERM to the group, a replacement started, SIGKILL of what is left at the deadline."""
    deployment = _deployment_id(cluster, "runtime_flows.py:sleep_first_attempt", "sleep-first-attempt")
    release = cluster.workdir / "release-short-runs"
    short = cluster.trigger(deployment, {"seconds": SHORT_RUN_CAP_SECONDS, "release_file": str(release)})
    long = cluster.trigger(deployment, {"seconds": 900})
    cluster.wait_running([short, long], RUN_TIMEOUT)
    replacement = cluster.start_worker()  # ECS starts the new task first on a deploy
    stop = _stop_releasing(stoppable_worker, release)
    assert stop.exited_in_time, (
        "the old worker was still handing over at the deadline:\n" + stoppable_worker.log()[-3000:]
    )
    runs = cluster.wait_final([short, long], RUN_TIMEOUT)
    assert replacement.alive()
    assert runs[short].state.type == StateType.COMPLETED, runs[short].state
    assert runs[short].run_count == 1, "the short run was run again instead of finishing in place"
    assert runs[long].state.type == StateType.COMPLETED, runs[long].state
    assert runs[long].run_count == 2
    wait_for(lambda: len(_attempts(cluster, long)) == 2, 60, "both attempts in the run's logs")
    assert _attempts(cluster, long) == ["attempt 1", "attempt 2"], "the flow could not tell its second attempt"


@pytest.mark.long  # in CI's own `-m long` run: keeps the default run short
def test_ecs_stop_with_limit_runs_in_flight_loses_none(cluster: Cluster, stoppable_worker: Process) -> None:
    """A full worker stopped: half its runs can finish before the deadline, half cannot; all end COMPLETED."""
    command = cluster.container["command"]
    limit = int(command[command.index("--limit") + 1])
    deployment = _deployment_id(cluster, "runtime_flows.py:sleep_first_attempt", "sleep-first-attempt")
    release = cluster.workdir / "release-short-runs-at-limit"
    short = {"seconds": SHORT_RUN_CAP_SECONDS, "release_file": str(release)}
    ids = [cluster.trigger(deployment, short if n % 2 else {"seconds": 900}) for n in range(limit)]
    cluster.wait_running(ids, RUN_TIMEOUT)
    replacement = cluster.start_worker()
    stop = _stop_releasing(stoppable_worker, release)
    assert stop.exited_in_time, stoppable_worker.log()[-3000:]
    runs = cluster.wait_final(ids, RUN_TIMEOUT)
    assert replacement.alive()
    assert {r.state.type for r in runs.values()} == {StateType.COMPLETED}, [r.state for r in runs.values()]
    assert sorted(r.run_count for r in runs.values()) == sorted(1 if n % 2 else 2 for n in range(limit))


@pytest.mark.long  # in CI's own `-m long` run: keeps the default run short (the fast set has a stand-in's)
def test_ecs_stop_a_run_whose_child_has_no_environment_and_a_run_printing_1_mib_finish_in_place(
    cluster: Cluster, stoppable_worker: Process
) -> None:
    """The supervisor freezes the worker only: a run's child started with env={} (no PREFECT__FLOW_RUN_ID) keeps
    running, and a run that writes more than a pipe holds while the worker is frozen is not blocked."""
    release = cluster.workdir / "release-child-and-chatty-runs"
    short = {"seconds": SHORT_RUN_CAP_SECONDS, "release_file": str(release)}
    child = cluster.trigger(_deployment_id(cluster, "runtime_flows.py:env_less_child", "env-less-child"), short)
    chatty = cluster.trigger(_deployment_id(cluster, "runtime_flows.py:chatty", "chatty"), short)
    cluster.wait_running([child, chatty], RUN_TIMEOUT)
    wait_for(  # the child is running at the stop
        lambda: any(str(release) in describe_live(pid) for pid in stoppable_worker.tree()), 60, "the env-less child"
    )
    replacement = cluster.start_worker()  # runs a handed-back run again, so a failure shows as a second run
    stop = _stop_releasing(stoppable_worker, release)
    assert stop.exited_in_time, stoppable_worker.log()[-3000:]
    runs = cluster.wait_final([child, chatty], RUN_TIMEOUT)
    assert replacement.alive()
    for name, run_id in (("env-less child", child), ("1 MiB of output", chatty)):
        assert runs[run_id].state.type == StateType.COMPLETED, (name, runs[run_id].state)
        assert runs[run_id].run_count == 1, f"the run with {name} was handed back instead of finishing in place"
    lines = stoppable_worker.log().count("x" * 1023 + "\n")
    assert lines == 1024, f"{lines} of the chatty run's 1024 lines reached the worker's log"


@pytest.mark.long  # in CI's own `-m long` run: keeps the default run short
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


AUTH_STRING = "admin:the-right-password"


@pytest.mark.long  # in CI's own `-m long` run: keeps the default run short
def test_worker_from_the_auth_string_task_definition_polls_and_runs_a_flow() -> None:
    """prefectApiAuthString: the rendered task definition's `secrets` are the worker's only credential."""
    with local_cluster(auth_string=AUTH_STRING) as c:
        assert [s["name"] for s in c.container["secrets"]] == ["PREFECT_API_AUTH_STRING"]
        assert AUTH_STRING not in str(c.container)
        w = start_ready_worker(c)  # healthy and registered: it polls the server that checks the string
        try:
            run_id = c.trigger(_deployment_id(c, "runtime_flows.py:tiny", "tiny"), {"n": 1})
            run = c.wait_final([run_id], RUN_TIMEOUT)[run_id]
            assert run.state.type == StateType.COMPLETED, c.run_logs(run_id)
            logs = c.run_logs(run_id)
        finally:
            w.stop()
        output = w.log() + (c.server.log() if c.server else "")
    assert AUTH_STRING not in output and AUTH_STRING not in logs
    assert base64.b64encode(AUTH_STRING.encode()).decode() not in output  # nor as basic auth sends it


def test_rejected_credentials_fail_loudly_without_printing_the_key() -> None:
    """A server that requires another credential rejects the worker, which must say so and exit."""
    wrong = "admin:a-wrong-password"
    with local_cluster(auth_string=AUTH_STRING, deploy=False) as c:
        env = c.worker_env(PREFECT_API_AUTH_STRING=wrong)  # as a stale secret version would give it
        w = Process.start("worker-rejected", c.worker_argv(), env, c.logs)
        c.workers.append(w)
        try:
            code = w.wait(timeout=120)
        except Exception:
            w.stop()
            raise AssertionError("a rejected worker kept running:\n" + w.log()[-3000:]) from None
        output = w.log()
    assert code != 0
    assert "401 Unauthorized" in output, output[-3000:]  # Prefect's words for a rejected key or auth string
    assert wrong not in output and AUTH_STRING not in output and API_KEY not in output
