"""The controller's failed-run notices against a real local Prefect server and moto's SNS (controller/notify.py),
through the handler as the Lambda runtime calls it: the alert topic as the stack makes it (alias/aws/sns), with an
SQS queue subscribed to read what arrives.

A run of the pool that failed in its flow and one crashed by infrastructure with no retries left give exactly one
message each, and a second and third minute give no duplicate; a crash by infrastructure with a retry left gives
none, in a minute whose recovery did not reach it as in the next, where recovery re-runs it; another pool's failed
run and a completed run give none. The label
the job writes names the state reported and changes neither the run's state nor its history.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest import REGION, deployments_in_new_pools, inbox, topic_with_inbox
from test_controller_recovery import OBSERVER_EXIT
from test_controller_runtime import controller_env

from controller import handler, notify

pytestmark = pytest.mark.slow


def test_a_failed_run_is_one_message_and_a_second_minute_sends_no_duplicate(
    prefect_servers: Any,
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    requests_sent: list[tuple[str, str, str, bytes | None]],
) -> None:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRunPolicy
    from prefect.states import Completed, Crashed, Failed, Pending, Running

    server = prefect_servers[0]
    ours, theirs = (f"notify-{side}-{uuid.uuid4().hex[:8]}" for side in ("ours", "theirs"))
    topic, queue = topic_with_inbox()
    with SyncPrefectClient(server.url) as client:
        deployments = deployments_in_new_pools(client, "nightly-etl", "process", ours, theirs)
        cases = {
            "failed": (ours, 0, Failed(message="Flow run encountered an exception: ValueError: bad input")),
            "crashed-for-good": (ours, 0, Crashed(message=OBSERVER_EXIT)),
            "crashed-retry-left": (ours, 1, Crashed(message=OBSERVER_EXIT)),
            "completed": (ours, 0, Completed()),
            "other-pool-failed": (theirs, 0, Failed(message="ValueError: not ours")),
        }
        runs = {}
        for name, (pool, retries, end) in cases.items():
            run_id = client.create_flow_run_from_deployment(deployments[pool]).id
            client.set_flow_run_state(run_id, Pending())
            assert client.set_flow_run_state(run_id, Running()).status.value == "ACCEPT", name
            client.update_flow_run(run_id, empirical_policy=FlowRunPolicy(retries=retries))
            client.set_flow_run_state(run_id, end)
            runs[name] = run_id
        before = {name: client.read_flow_run(run_id) for name, run_id in runs.items()}
        histories = {name: [s.id for s in client.read_flow_run_states(run_id)] for name, run_id in runs.items()}

        env = {
            **controller_env(server.url, ours, f"arn:aws:ecs:{REGION}:123456789012:cluster/notify"),
            "ALERT_TOPIC_ARN": topic,
            "ALERT_PREFIX": "prefect-fargate-nightly",
            "WORKER_LOG_GROUP": "/prefect-fargate/nightly/prefect",
            "AWS_REGION": REGION,
        }
        monkeypatch.setattr(notify, "_published", set())
        handler.run_jobs(env, {"notify": notify.run})  # a minute whose recovery ran out of time before the crash
        first = inbox(queue)
        handler.run_jobs(env)  # the next minute: recovery re-runs the crash with a retry left, nothing new is sent
        monkeypatch.setattr(notify, "_published", set())  # a cold container: the labels alone hold it back
        handler.run_jobs(env)
        assert inbox(queue) == []

        notices = {json.loads(m["Message"])["flowRun"]["id"]: m for m in first}
        assert sorted(notices) == sorted(str(runs[n]) for n in ("failed", "crashed-for-good")), first
        assert len(first) == 2
        for name in ("failed", "crashed-for-good"):
            message = json.loads(notices[str(runs[name])]["Message"])
            assert notices[str(runs[name])]["Subject"] == f"prefect-fargate-nightly: a flow run of pool {ours} failed"
            assert (message["flow"]["name"], message["deployment"]["name"]) == ("nightly-etl", ours)
            assert message["state"]["id"] == str(before[name].state.id)
            assert message["flowRun"]["url"] == f"{server.url.removesuffix('/api')}/runs/flow-run/{runs[name]}"
            assert (message["logs"]["worker"] is None) == (name == "failed")
            after = client.read_flow_run(runs[name])
            assert after.labels[notify.LABEL] == str(before[name].state.id)  # the state reported
            assert after.state.id == before[name].state.id  # the label changed no state...
            assert [s.id for s in client.read_flow_run_states(runs[name])] == histories[name]  # ...nor the history
        retried = client.read_flow_run(runs["crashed-retry-left"])
        assert retried.state.name == "AwaitingRetry" and notify.LABEL not in retried.labels  # recovery's, not ended
        for name in ("completed", "other-pool-failed"):
            assert notify.LABEL not in client.read_flow_run(runs[name]).labels

    sent = [(method, url.removeprefix(server.url), body) for method, url, _, body in requests_sent]
    labels = [(method, url, json.loads(body or b"{}")) for method, url, body in sent if url.endswith("/labels")]
    assert labels == [
        ("PATCH", f"/flow_runs/{runs[name]}/labels", {notify.LABEL: str(before[name].state.id)})
        for name in sorted(("failed", "crashed-for-good"), key=lambda n: before[n].end_time)
    ]
    changes = [url for _, url, _ in sent if url.endswith("/set_state")]
    assert changes == [f"/flow_runs/{runs['crashed-retry-left']}/set_state"]  # recovery's re-run, and nothing else
