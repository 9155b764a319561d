"""The controller's rules with fakes (no server, no AWS): which runs are judged dead or stuck, what each gets,
when nothing is done, and how failures are reported (controller/recovery.py, handler.py, prefect_rest.py)."""

from __future__ import annotations

import io
import urllib.error
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller import handler, recovery
from controller.context import Context, Settings
from controller.prefect_rest import PrefectError, PrefectRest, auth_header

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/prefect-worker-cluster"
KEY = "pnu_TestKeyThatMustNeverLeak0123456789"


def settings(pool_type: str = "process") -> Settings:
    return Settings(
        api_url="https://prefect.example/api",
        credential_secret_arn=None,
        credential_env="PREFECT_API_KEY",
        pool_name="fargate-pool",
        pool_type=pool_type,
        cluster_arn=CLUSTER,
        silence_seconds=150,
        stuck_seconds=900,
    )


def flow_run(
    n: int,
    state: str = "RUNNING",
    age: float = 600,
    run_count: int = 1,
    retries: int | None = 1,
    pid: str | None = None,
) -> dict[str, Any]:
    return {
        "id": f"run-{n}",
        "state": {"id": f"state-{n}", "type": state, "timestamp": (NOW - timedelta(seconds=age)).isoformat()},
        "run_count": run_count,
        "empirical_policy": {"retries": retries},
        "infrastructure_pid": pid,
    }


class FakePrefect:
    """The PrefectRest calls recovery makes, answered from memory; records every set_state."""

    def __init__(self, runs: list[dict[str, Any]], heard: set[str] = frozenset(), pendings: int = 1) -> None:
        self.runs = {run["id"]: run for run in runs}
        self.heard = set(heard)
        self.pendings = pendings
        self.asked_heartbeats: list[list[str]] = []
        self.changes: list[tuple[str, dict[str, Any]]] = []

    def pool_runs(self, pool: str, state_types: list[str]) -> list[dict[str, Any]]:
        return [run for run in self.runs.values() if run["state"]["type"] in state_types]

    def runs_heard_from(self, run_ids: list[str], event: str, since: str, until: str) -> set[str]:
        assert event == "prefect.flow-run.heartbeat" and since == (NOW - timedelta(seconds=150)).isoformat()
        self.asked_heartbeats.append(run_ids)
        return self.heard & set(run_ids)

    def states(self, run_id: str) -> list[dict[str, Any]]:
        return [{"type": "SCHEDULED"}] + [{"type": "PENDING"}] * self.pendings

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self.runs[run_id]

    def set_state(self, run_id: str, state: dict[str, Any]) -> dict[str, Any]:
        self.changes.append((run_id, state))
        return {"status": "ACCEPT"}


class FakeEcs:
    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self.asked: list[list[str]] = []

    def describe_tasks(self, cluster: str, tasks: list[str]) -> dict[str, Any]:
        assert cluster == CLUSTER
        self.asked.append(tasks)
        return {
            "tasks": [{"taskArn": t, "lastStatus": self.statuses[t]} for t in tasks if self.statuses[t] != "MISSING"],
            "failures": [{"arn": t, "reason": "MISSING"} for t in tasks if self.statuses[t] == "MISSING"],
        }


def context(prefect: FakePrefect, pool_type: str = "process", ecs: FakeEcs | None = None) -> Context:
    lines: list[str] = []
    return Context(settings=settings(pool_type), prefect=prefect, ecs=ecs, now=lambda: NOW, log=lines.append)  # type: ignore[arg-type]


def changes(prefect: FakePrefect) -> dict[str, tuple[str, str]]:
    return {run_id: (state["type"], state["name"]) for run_id, state in prefect.changes}


# -- the rule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_count", "retries", "expected"),
    [(1, 1, "retry"), (2, 1, "crash"), (1, 0, "crash"), (1, None, "crash"), (3, 3, "retry"), (4, 3, "crash")],
)
def test_a_dead_run_is_handed_back_while_run_count_is_at_most_retries(
    run_count: int, retries: int, expected: str
) -> None:
    verdict = recovery.judge(flow_run(1, run_count=run_count, retries=retries), run_count, "It died")
    assert verdict.action == expected
    assert verdict.message.startswith("It died; ") and "prefect-fargate controller" in verdict.message


def test_the_states_proposed_are_awaiting_retry_due_now_or_crashed_with_the_message() -> None:
    retry = recovery.new_state(recovery.Verdict("r", "s", "retry", "why"), NOW)
    assert retry == {
        "type": "SCHEDULED",
        "name": "AwaitingRetry",
        "message": "why",
        "state_details": {"scheduled_time": NOW.isoformat()},
    }
    assert recovery.new_state(recovery.Verdict("r", "s", "crash", "why"), NOW) == {
        "type": "CRASHED",
        "name": "Crashed",
        "message": "why",
    }


# -- process pool: heartbeats --------------------------------------------------------------------------


def test_process_pool_acts_only_on_runs_silent_for_longer_than_the_silence() -> None:
    runs = [
        flow_run(1, age=600, run_count=1, retries=1),  # silent: handed back
        flow_run(2, age=600, run_count=1, retries=0),  # silent, no retries: crashed
        flow_run(3, age=600),  # heard from: alive
        flow_run(4, age=100),  # started 100 s ago: cannot have been silent for 150 s
    ]
    prefect = FakePrefect(runs, heard={"run-3"})
    recovery.run(context(prefect))
    assert changes(prefect) == {"run-1": ("SCHEDULED", "AwaitingRetry"), "run-2": ("CRASHED", "Crashed")}
    assert prefect.asked_heartbeats == [["run-1", "run-2", "run-3"]]  # the young run is not even asked about
    assert "No heartbeat for 150 s" in prefect.changes[1][1]["message"]


def test_a_run_whose_state_changed_since_it_was_judged_is_left_alone() -> None:
    prefect = FakePrefect([flow_run(1)])
    judged = dict(prefect.runs["run-1"])
    prefect.pool_runs = lambda pool, types: [judged]  # type: ignore[method-assign]
    prefect.runs["run-1"] = {**judged, "state": {"id": "state-new", "type": "COMPLETED"}}  # finished meanwhile
    recovery.run(context(prefect))
    assert prefect.changes == []


# -- ecs pool: DescribeTasks ------------------------------------------------------------------------------


def task(n: int) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task/prefect-worker-cluster/{n:032x}"


def test_ecs_pool_acts_only_on_runs_whose_task_of_this_cluster_stopped_or_is_gone() -> None:
    runs = [
        flow_run(1, pid=f"{CLUSTER}::{task(1)}"),  # STOPPED
        flow_run(2, pid=f"prefect-worker-cluster::{task(2)}"),  # MISSING (named by cluster name)
        flow_run(3, pid=f"{CLUSTER}::{task(3)}"),  # RUNNING
        flow_run(4, pid=f"other-cluster::{task(4)}"),  # another cluster: not ours to judge
        flow_run(5, pid=None),  # no task known
        flow_run(6, pid="12345"),  # a bare PID
    ]
    ecs = FakeEcs({task(1): "STOPPED", task(2): "MISSING", task(3): "RUNNING"})
    prefect = FakePrefect(runs)
    recovery.run(context(prefect, "ecs", ecs))
    assert changes(prefect) == {"run-1": ("SCHEDULED", "AwaitingRetry"), "run-2": ("SCHEDULED", "AwaitingRetry")}
    assert ecs.asked == [sorted([task(1), task(2), task(3)])]
    assert prefect.asked_heartbeats == []


def test_describe_tasks_is_asked_100_at_a_time() -> None:
    runs = [flow_run(n, pid=f"{CLUSTER}::{task(n)}") for n in range(150)]
    ecs = FakeEcs({task(n): "RUNNING" for n in range(150)})
    recovery.run(context(FakePrefect(runs), "ecs", ecs))
    assert [len(batch) for batch in ecs.asked] == [100, 50]


# -- stuck Pending ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pendings", "retries", "expected"), [(1, 1, "SCHEDULED"), (2, 1, "CRASHED"), (1, None, "CRASHED")]
)
def test_a_stuck_pending_run_counts_its_attempts_by_its_pending_states(
    pendings: int, retries: int | None, expected: str
) -> None:
    runs = [flow_run(1, state="PENDING", age=901, run_count=0, retries=retries), flow_run(2, state="PENDING", age=899)]
    prefect = FakePrefect(runs, pendings=pendings)
    recovery.run(context(prefect))
    assert [(run_id, state["type"]) for run_id, state in prefect.changes] == [("run-1", expected)]
    assert prefect.changes[0][1]["message"].startswith("Pending for 15 min in work pool fargate-pool")


# -- faults ---------------------------------------------------------------------------------------------------


def test_a_failed_change_does_not_keep_the_others_from_theirs_and_is_reported() -> None:
    prefect = FakePrefect([flow_run(1), flow_run(2)])
    real = prefect.set_state

    def set_state(run_id: str, state: dict[str, Any]) -> dict[str, Any]:
        if run_id == "run-1":
            raise PrefectError("Prefect API POST /flow_runs/run-1/set_state: HTTP 503 (Service Unavailable)")
        return real(run_id, state)

    prefect.set_state = set_state  # type: ignore[method-assign]
    with pytest.raises(recovery.RecoveryError, match="run-1"):
        recovery.run(context(prefect))
    assert list(changes(prefect)) == ["run-2"]


def test_unreadable_heartbeats_change_nothing() -> None:
    prefect = FakePrefect([flow_run(1)])

    def unreachable(*_: Any) -> set[str]:
        raise PrefectError("Prefect API POST /events/filter: unreachable")

    prefect.runs_heard_from = unreachable  # type: ignore[method-assign]
    with pytest.raises(PrefectError):
        recovery.run(context(prefect))
    assert prefect.changes == []


def test_a_failing_job_is_logged_masked_the_others_run_and_the_handler_raises(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = Context(settings=settings(), prefect=None, ecs=None, now=lambda: NOW, log=handler.log, credential="u:s3cret")  # type: ignore[arg-type]
    monkeypatch.setattr(handler, "build_context", lambda env, log: ctx)
    ran = []

    def rejected(_: Context) -> None:
        raise PrefectError("Prefect API POST /flow_runs/filter: HTTP 401 (credential rejected) for u:s3cret\nmore")

    with pytest.raises(handler.ControllerError, match="first"):
        handler.run_jobs({}, {"first": rejected, "second": ran.append})
    assert ran == [ctx]
    (line,) = capsys.readouterr().out.splitlines()
    assert (
        "s3cret" not in line and "HTTP 401 (credential rejected)" in line and line.startswith("controller: job first")
    )


def test_setup_failures_are_logged_and_raised(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def throttled(env: Any, log: Any) -> Context:
        raise RuntimeError("An error occurred (ThrottlingException) when calling the GetSecretValue operation")

    monkeypatch.setattr(handler, "build_context", throttled)
    with pytest.raises(handler.ControllerError):
        handler.handler({}, None)
    assert "ThrottlingException" in capsys.readouterr().out


# -- the REST client ------------------------------------------------------------------------------------------


def test_auth_headers_are_what_prefects_client_sends() -> None:
    assert auth_header(KEY, "PREFECT_API_KEY") == {"Authorization": f"Bearer {KEY}"}
    assert auth_header("u:p", "PREFECT_API_AUTH_STRING") == {"Authorization": "Basic dTpw"}
    assert auth_header(None, "PREFECT_API_KEY") == {}


def test_http_errors_and_outages_are_one_line_without_the_credential() -> None:
    def rejected(request: Any, timeout: float) -> Any:
        assert request.get_header("Authorization") == f"Bearer {KEY}" and timeout == 10
        raise urllib.error.HTTPError(request.full_url, 401, "Unauthorized", {}, io.BytesIO(b"{}"))  # type: ignore[arg-type]

    def down(request: Any, timeout: float) -> Any:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    for opener, expected in (
        (rejected, "HTTP 401 (credential rejected)"),
        (down, "unreachable (ConnectionRefusedError"),
    ):
        client = PrefectRest("https://prefect.example/api", auth_header(KEY, "PREFECT_API_KEY"), opener)
        with pytest.raises(PrefectError) as caught:
            client.pool_runs("fargate-pool", ["RUNNING"])
        assert expected in str(caught.value) and KEY not in str(caught.value) and "\n" not in str(caught.value)


def test_a_next_page_on_another_host_is_not_followed() -> None:
    class Answer(io.BytesIO):
        def __enter__(self) -> Answer:
            return self

    def opener(request: Any, timeout: float) -> Any:
        return Answer(b'{"events": [], "next_page": "https://elsewhere.example/api/events/filter/next?page-token=x"}')

    client = PrefectRest("https://prefect.example/api", {}, opener)
    with pytest.raises(PrefectError, match="another host"):
        client.runs_heard_from(["r"], recovery.HEARTBEAT, "a", "b")
