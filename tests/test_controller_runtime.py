"""The stack controller's handler against a real local Prefect server (moto for Secrets Manager), called
in-process as the Lambda runtime calls it (controller/handler.py).

- A process worker started from the task definition is killed outright mid-run (SIGKILL to its whole tree, as
  an out-of-memory kill or a lost host ends a task): the run with `retries=1` is handed back and COMPLETES on a
  replacement worker with run_count 2; the run with `retries=0` ends CRASHED with the controller's message.
- What it may touch: only this pool's runs are selected. Another pool's run and a local run (no pool) left
  RUNNING and silent just as long are never changed; a run in a final state is refused by the server; a stuck
  Pending run with a retry left is handed back. Its requests are read-only but for set_state, and never
  `get_scheduled_flow_runs`: the pool stays NOT_READY.
"""

from __future__ import annotations

import re
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import boto3
import pytest
from conftest import API_KEY

from controller import handler
from controller.context import build_context
from devtools.harness import Cluster, local_cluster, wait_for

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 240
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The component sets five beats (150 s); the runtime test waits for a shorter silence, still over two beats of
# the stack's 30 s, so that it need not idle two and a half minutes (the rule is the same; only the number).
TEST_SILENCE = 65
READ_ONLY = {
    ("POST", "/flow_runs/filter"),
    ("POST", "/events/filter"),
    ("GET", "/events/filter/next"),
    ("GET", "/flow_runs/{id}"),
    ("GET", "/flow_run_states/"),
    ("POST", "/flow_runs/count"),  # the backlog job (controller/backlog.py)
}


def controller_env(api_url: str, pool: str, silence: int = TEST_SILENCE) -> dict[str, str]:
    """The function's environment as StackController sets it, pointed at the local server and moto's secret."""
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name=f"prefect-api-key-{pool}", SecretString=API_KEY)["ARN"]
    return {
        "PREFECT_API_URL": api_url,
        "PREFECT_CREDENTIAL_SECRET_ARN": arn,
        "PREFECT_CREDENTIAL_ENV": "PREFECT_API_KEY",
        "WORK_POOL": pool,
        "WORK_POOL_TYPE": "process",
        "CLUSTER_ARN": "arn:aws:ecs:us-east-1:123456789012:cluster/prefect-worker-cluster",
        "SILENCE_SECONDS": str(silence),
        "STUCK_SECONDS": "900",
        # The backlog job's (components/worker_scaling.py, controller_environment): a fixed worker.
        "BACKLOG_NAMESPACE": "prefect-fargate-test",
        "BACKLOG_RUN_LIMIT": "4",
        "BACKLOG_MIN_WORKERS": "1",
        "BACKLOG_MAX_WORKERS": "1",
        "BACKLOG_LEAD_MINUTES": "3",
        "BACKLOG_QUIET_MINUTES": "10",
    }


@pytest.fixture
def requests_sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every HTTP request the controller sends (it sends them all through urllib.request.urlopen)."""
    sent: list[tuple[str, str, str]] = []
    real = urllib.request.urlopen

    def recording(request: urllib.request.Request, *args: Any, **kwargs: Any) -> Any:
        sent.append((request.get_method(), request.full_url, request.get_header("Authorization") or ""))
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", recording)
    return sent


def endpoint(url: str, api_url: str) -> str:
    """`/flow_runs/{id}` for `/flow_runs/<uuid>`; the query left out."""
    return UUID_TEXT.sub("{id}", url.removeprefix(api_url).split("?", 1)[0])


def check_requests(sent: list[tuple[str, str, str]], api_url: str, acted_on: set[str]) -> None:
    """Read-only but for set_state on `acted_on`; never a worker poll; the key sent as Prefect's client sends it."""
    assert sent, "the controller sent nothing"
    assert not [url for _, url, _ in sent if "get_scheduled_flow_runs" in url or "/work_pools/" in url]
    writes = {url.removeprefix(api_url) for method, url, _ in sent if url.endswith("/set_state")}
    assert writes == {f"/flow_runs/{run_id}/set_state" for run_id in acted_on}
    others = {(m, endpoint(url, api_url)) for m, url, _ in sent if not url.endswith("/set_state")}
    assert others <= READ_ONLY, others - READ_ONLY
    assert {auth for *_, auth in sent} == {f"Bearer {API_KEY}"}


def history(cluster: Cluster, run_id: UUID) -> list[str]:
    with cluster.client() as client:
        return [state.type.value for state in client.read_flow_run_states(run_id)]


# -- a worker killed outright -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with local_cluster() as c:
        yield c


@pytest.mark.long
def test_a_killed_workers_runs_are_retried_as_their_flow_allows_else_crashed(
    cluster: Cluster, aws_env: None, requests_sent: list[tuple[str, str, str]]
) -> None:
    worker = cluster.start_worker()
    wait_for(lambda: cluster.probe_health(worker.health_port) == 0 or not worker.alive(), 120, "worker healthy")
    one_retry = cluster.add_deployment("runtime_flows.py:sleep_first_attempt_retries_1", "recover-retries-1")
    no_retry = cluster.add_deployment("runtime_flows.py:sleep_first_attempt", "recover-retries-0")
    runs = {"retries-1": cluster.trigger(one_retry, {"seconds": 600}), "retries-0": cluster.trigger(no_retry)}
    beat = "prefect.flow-run.heartbeat"
    wait_for(lambda: all(beat in cluster.run_events(r) for r in runs.values()), RUN_TIMEOUT, "a heartbeat of each")
    env = controller_env(cluster.api_url, cluster.work_pool)

    task = [worker.pid, *worker.tree()]
    worker.signal_group(signal.SIGKILL)
    worker.kill_leftovers()
    worker.wait(timeout=10)
    killed = time.monotonic()
    wait_for(lambda: not [pid for pid in task if _alive(pid)], 10, "every process of the task gone")

    handler.run_jobs(env)  # just killed: not yet silent for long enough, so nothing is done
    assert {name: r.state.type.value for name, r in _runs(cluster, runs).items()} == {
        "retries-1": "RUNNING",
        "retries-0": "RUNNING",
    }
    time.sleep(max(0.0, killed + TEST_SILENCE + 5 - time.monotonic()))
    handler.run_jobs(env)  # the minute the schedule would run it next

    replacement = cluster.start_worker()
    try:
        final = cluster.wait_final(list(runs.values()), RUN_TIMEOUT)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {replacement.log()[-3000:]}") from None
    retried, crashed = final[runs["retries-1"]], final[runs["retries-0"]]
    assert (retried.state.type.value, retried.run_count) == ("COMPLETED", 2), retried.state
    assert "SCHEDULED" in history(cluster, runs["retries-1"])  # AwaitingRetry between the two attempts
    assert "CRASHED" not in history(cluster, runs["retries-1"])
    assert crashed.state.type.value == "CRASHED"
    assert crashed.state.message.startswith(f"No heartbeat for {TEST_SILENCE} s while RUNNING")
    assert "no retries left (1 attempt(s), retries=0)" in crashed.state.message
    check_requests(requests_sent, cluster.api_url, {str(run_id) for run_id in runs.values()})


def _runs(cluster: Cluster, runs: dict[str, UUID]) -> dict[str, Any]:
    found = cluster.flow_runs(list(runs.values()))
    return {name: found[run_id] for name, run_id in runs.items()}


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie process is dead, only not yet reaped


# -- what it may touch ------------------------------------------------------------------------------------------


def test_only_this_pools_dead_or_stuck_runs_are_changed_and_the_pool_is_not_polled(
    prefect_servers: Any, aws_env: None, requests_sent: list[tuple[str, str, str]]
) -> None:
    """Runs left RUNNING with no heartbeat at all, judged 20 minutes later (the clock given to the handler):
    this pool's is crashed, another pool's and a local run's (no pool: `python flow.py`, `flow.serve()`) are
    not even selected, so their silence does not matter however long it lasts."""
    from prefect import flow
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.objects import FlowRunPolicy
    from prefect.states import Completed, Pending, Running

    server = prefect_servers[0]  # the session's open server: pools named per test
    ours, theirs = (f"{side}-{uuid.uuid4().hex[:8]}" for side in ("ours", "theirs"))
    with SyncPrefectClient(server.url) as client:
        for pool in (ours, theirs):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        flow_id = client.create_flow_from_name("silent")
        deployments = {
            pool: client.create_deployment(flow_id=flow_id, name=pool, work_pool_name=pool) for pool in (ours, theirs)
        }
        runs = {
            name: client.create_flow_run_from_deployment(deployments[pool]).id
            for name, pool in (("dead", ours), ("stuck", ours), ("finished", ours), ("other-pool", theirs))
        }
        runs["local"] = client.create_flow_run(flow(name="silent")(lambda: None)).id  # as `python flow.py` makes it
        for name in ("dead", "finished", "other-pool", "local"):
            client.set_flow_run_state(runs[name], Pending())
            assert client.set_flow_run_state(runs[name], Running()).status.value == "ACCEPT", name
        client.set_flow_run_state(runs["finished"], Completed())
        # A stuck Pending run whose engine had started once and written its flow's retries=1 (flow_engine.py).
        client.update_flow_run(runs["stuck"], empirical_policy=FlowRunPolicy(retries=1))
        client.set_flow_run_state(runs["stuck"], Pending())

        env = controller_env(server.url, ours, silence=150)
        later = lambda: datetime.now(UTC) + timedelta(minutes=20)  # noqa: E731
        handler.run_jobs(env, now=later)

        states = {name: client.read_flow_run(run_id).state for name, run_id in runs.items()}
        assert states["dead"].type.value == "CRASHED"
        assert states["dead"].message.startswith("No heartbeat for 150 s while RUNNING")
        assert (states["stuck"].type.value, states["stuck"].name) == ("SCHEDULED", "AwaitingRetry")
        assert states["stuck"].message.startswith(f"Pending for 15 min in work pool {ours}")
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
