"""controller/backlog.py against a real local Prefect server and moto's CloudWatch: every kind of run is
counted as the scaling decision needs it, another pool's runs are not, and the pool stays NOT_READY (the
job's calls are reads that no worker poll is made of)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from conftest import controller_env, deployments_in_new_pools
from prefect_servers import Server
from test_controller_backlog import settings as backlog_settings

from controller import backlog as backlog_job
from controller import handler
from controller.backlog import read_backlog, workers_wanted
from controller.prefect_rest import PrefectRest

pytestmark = pytest.mark.slow


def make_runs(server: Server, pool: str, now: datetime) -> dict[str, str]:
    """A deployment in `pool` and one run of each kind the backlog tells apart; returns name -> run id."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.states import AwaitingRetry, Completed, Late, Pending, Running, Scheduled

    with SyncPrefectClient(server.url) as client:
        deployment = deployments_in_new_pools(client, f"{pool}-flow", "process", pool)[pool]
        ago, ahead = now - timedelta(minutes=5), now + timedelta(hours=1)
        # name -> first scheduled time, then the states it goes through
        kinds: dict[str, tuple[datetime, list[Any]]] = {
            "later": (ahead, []),
            "due-in-a-minute": (now + timedelta(minutes=1), []),
            "due-now": (now - timedelta(seconds=10), []),
            # Rescheduled to 02:20 from 01:00 (say by hand), then marked Late as the server's Late-run service does,
            # with its next scheduled start (late_runs.py): late for 20 minutes, not 60.
            "late": (now - timedelta(hours=1), [Scheduled(scheduled_time=now - timedelta(minutes=20)),
                                                Late(scheduled_time=now - timedelta(minutes=20))]),
            # Runs that were due but were put off: their expected_start_time stays the first one, long past.
            "retry-in-an-hour": (ago, [Running(), AwaitingRetry(scheduled_time=ahead)]),
            "rescheduled-by-hand": (ago, [Scheduled(scheduled_time=ahead)]),
            # Handed back 30 minutes ago and taken by no worker: AwaitingRetry never turns Late (late_runs.py marks
            # only runs named Scheduled), yet it is the oldest run waiting past its start.
            "handed-back": (now - timedelta(hours=2),
                            [Running(), AwaitingRetry(scheduled_time=now - timedelta(minutes=30))]),
            "pending": (now - timedelta(minutes=2), [Pending()]),
            "running-1": (now - timedelta(minutes=3), [Running()]),
            "running-2": (now - timedelta(minutes=3), [Running()]),
            "ended": (now - timedelta(minutes=4), [Running(), Completed()]),
        }  # fmt: skip
        ids = {}
        for name, (when, states) in kinds.items():
            run = client.create_flow_run_from_deployment(deployment, state=Scheduled(scheduled_time=when), name=name)
            for state in states:
                client.set_flow_run_state(run.id, state, force=True)
            ids[name] = str(run.id)
        return ids


def test_every_kind_of_run_is_counted_for_this_pool_only_and_the_pool_stays_not_ready(
    prefect_servers: tuple[Server, Server], aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = prefect_servers[0]
    now = datetime.now(UTC)
    settings = backlog_settings(work_pool="scale-pool")
    calls: list[str] = []
    request = PrefectRest.request

    def recorded(self: PrefectRest, method: str, path: str, body: Any = None) -> Any:
        calls.append(f"{method} {path}")
        return request(self, method, path, body)

    monkeypatch.setattr(PrefectRest, "request", recorded)
    rest = PrefectRest(server.url, {})

    ids = make_runs(server, "scale-pool", now)
    make_runs(server, "someone-elses-pool", now)
    put_off = [server.api("GET", f"/flow_runs/{ids[name]}") for name in ("retry-in-an-hour", "rescheduled-by-hand")]
    times = [(datetime.fromisoformat(r["expected_start_time"]), datetime.fromisoformat(r["next_scheduled_start_time"]))
             for r in put_off]  # fmt: skip
    assert all(expected < now < next_start for expected, next_start in times)

    backlog = read_backlog(rest, settings, now)
    # due: 2 Scheduled + Late + the one handed back; not the two runs put off, though their expected_start_time
    # has passed
    assert (backlog.due, backlog.late, backlog.pending, backlog.running) == (4, 1, 1, 2)
    assert backlog.last_end_seconds is not None and backlog.last_end_seconds < 120  # "ended", just now
    assert 30 * 60 - 5 <= backlog.oldest_late_seconds <= 30 * 60 + 5  # the handed-back run, not the Late one (20)
    # The runs that started were expected 3, 3, 4, 5 (the one put off to retry) and 120 minutes (the one handed back)
    # before they started.
    assert backlog.start_delay_p50_seconds is not None and 150 <= backlog.start_delay_p50_seconds <= 260
    assert workers_wanted(backlog, settings) == math.ceil((4 + 1 + 2) / 4)

    # The handler as the Lambda runs it: settings from the environment, the job publishing through boto3.
    environment = controller_env(
        PREFECT_API_URL=server.url,
        WORK_POOL="scale-pool",
        CLUSTER_ARN="arn:aws:ecs:us-east-1:123456789012:cluster/c",
        BACKLOG_MIN_WORKERS="0",
        BACKLOG_MAX_WORKERS="5",
    )
    handler.run_jobs(environment, {"backlog": backlog_job.run}, now=lambda: now)
    cloudwatch = boto3.client("cloudwatch")
    metrics = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="prefect-fargate-test")["Metrics"]}
    assert metrics == {"WorkersWanted", "RunsDue", "RunsLate", "RunsPending", "RunsRunning", "OldestLateRunAge",
                       "StartDelayP50"}  # fmt: skip
    wanted = cloudwatch.get_metric_statistics(
        Namespace="prefect-fargate-test",
        MetricName="WorkersWanted",
        Dimensions=[{"Name": "WorkPool", "Value": "scale-pool"}],
        StartTime=now - timedelta(minutes=1),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [point["Maximum"] for point in wanted] == [2.0]

    # Only reads: counts and filters, never a worker's poll (get_scheduled_flow_runs marks a pool READY).
    assert set(calls) == {"POST /flow_runs/count", "POST /flow_runs/filter"}
    assert server.api("GET", "/work_pools/scale-pool")["status"] == "NOT_READY"
