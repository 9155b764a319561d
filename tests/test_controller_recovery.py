"""The recovery job's rules with fakes (no server, no AWS): which runs are judged dead, stuck or crashed by
infrastructure, by what evidence, what each gets, and when nothing is done (controller/recovery.py). Each rule
here fails when the rule changes: the evidence (a stopped worker task, corroborated silence), the silence, the
hand-back cap, the crash lookback, the messages recognised as infrastructure's, and the body of each change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller import recovery
from controller.context import Context, Settings
from controller.prefect_rest import PrefectError

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/prefect-worker-cluster"
SILENCE = 900  # the stack's: five beats of 180 s (components/stack_controller.py, agent_service.py)
OBSERVER_EXIT = "The following containers stopped with a non-zero exit code: ['prefect']"
OBSERVER_START = (
    "ECS task failed to start: Capacity is unavailable at this time. The capacity provider could not place the task."
)


def settings(pool_type: str = "process", silence: int = SILENCE, retry_crashed: bool = True) -> Settings:
    return Settings(
        api_url="https://prefect.example/api",
        credential_secret_arn=None,
        credential_env="PREFECT_API_KEY",
        pool_name="fargate-pool",
        pool_type=pool_type,
        cluster_arn=CLUSTER,
        silence_seconds=silence,
        stuck_seconds=900,
        retry_crashed=retry_crashed,
    )


def task(n: int, cluster: str = "prefect-worker-cluster") -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{n:032x}"


def named(task_arn: str) -> str:
    """The worker's name for a task, as the supervisor names it (Prefect refuses `/` in a worker name)."""
    return task_arn.replace("/", ":")


def at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat()


def flow_run(
    n: int,
    state: str = "RUNNING",
    age: float = 3600,
    run_count: int = 1,
    retries: int | None = 1,
    pid: str | None = None,
    worker: str | None = None,
    name: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    return {
        "id": f"run-{n}",
        "state": {
            "id": f"state-{n}",
            "type": state,
            "name": name or state.title(),
            "timestamp": at(age),
            "message": message,
        },
        "run_count": run_count,
        "empirical_policy": {"retries": retries},
        "infrastructure_pid": pid,
        "labels": {"prefect.worker.name": named(worker)} if worker else {},
    }


def states(*types: str, end: float = 0) -> list[dict[str, Any]]:
    """A state history oldest first, one state a minute, the last `end` seconds ago: PENDING, RUNNING, ..."""
    count = len(types)
    return [{"id": f"h-{i}", "type": kind, "timestamp": at(end + 60 * (count - 1 - i))} for i, kind in enumerate(types)]


class FakePrefect:
    """The PrefectRest calls recovery makes, answered from memory; a change moves the run to its new state."""

    def __init__(
        self,
        runs: list[dict[str, Any]],
        heard: set[str] = frozenset(),
        histories: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        self.runs = {run["id"]: run for run in runs}
        self.heard = set(heard)
        self.histories = histories or {}
        self.asked_heartbeats: list[tuple[list[str], str, str]] = []
        self.listed: list[tuple[list[str], dict[str, Any]]] = []
        self.changes: list[tuple[str, dict[str, Any]]] = []

    def pool_runs(self, pool: str, state_types: list[str], **flow_runs: Any) -> list[dict[str, Any]]:
        assert pool == "fargate-pool"
        self.listed.append((state_types, flow_runs))
        return [run for run in self.runs.values() if run["state"]["type"] in state_types]

    def runs_heard_from(self, run_ids: list[str], event: str, since: str, until: str) -> set[str]:
        assert event == "prefect.flow-run.heartbeat"
        self.asked_heartbeats.append((run_ids, since, until))
        return self.heard & set(run_ids)

    def states(self, run_id: str) -> list[dict[str, Any]]:
        """The run's history as given (ending with its current state), else one submission never started."""
        return self.histories.get(run_id) or states("SCHEDULED", "PENDING", "PENDING")

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self.runs[run_id]

    def set_state(self, run_id: str, state: dict[str, Any]) -> dict[str, Any]:
        self.changes.append((run_id, state))
        self.runs[run_id] = {
            **self.runs[run_id],
            "state": {**state, "id": f"new-{len(self.changes)}", "timestamp": NOW.isoformat()},
        }
        return {"status": "ACCEPT"}


class FakeEcs:
    def __init__(self, statuses: dict[str, str] | None = None) -> None:
        self.statuses = statuses or {}
        self.asked: list[list[str]] = []

    def describe_tasks(self, cluster: str, tasks: list[str]) -> dict[str, Any]:
        assert cluster == CLUSTER
        self.asked.append(tasks)
        status = {t: self.statuses.get(t, "RUNNING") for t in tasks}
        return {
            "tasks": [{"taskArn": t, "lastStatus": s} for t, s in status.items() if s != "MISSING"],
            "failures": [{"arn": t, "reason": "MISSING"} for t, s in status.items() if s == "MISSING"],
        }


def context(
    prefect: Any,
    pool_type: str = "process",
    ecs: FakeEcs | None = None,
    lines: list[str] | None = None,
    now: Callable[[], datetime] = lambda: NOW,
    **setting: Any,
) -> Context:
    return Context(
        settings=settings(pool_type, **setting),
        prefect=prefect,
        ecs=ecs or FakeEcs(),
        now=now,
        log=(lines if lines is not None else []).append,
    )


def changes(prefect: FakePrefect) -> dict[str, tuple[str, str]]:
    return {run_id: (state["type"], state["name"]) for run_id, state in prefect.changes}


# -- the rule for a dead RUNNING run -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_count", "retries", "expected"),
    [(1, 1, "retry"), (2, 1, "crash"), (1, 0, "crash"), (1, None, "crash"), (3, 3, "retry"), (4, 3, "crash")],
)
def test_a_dead_run_is_handed_back_while_run_count_is_at_most_retries(
    run_count: int, retries: int, expected: str
) -> None:
    verdict = recovery.judge(flow_run(1, run_count=run_count, retries=retries), run_count, "It died")
    assert verdict.action == expected
    assert verdict.message.startswith("It died; ") and verdict.message.endswith("(prefect-fargate controller).")


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


# -- process pool: the worker's task -----------------------------------------------------------------------------------


def test_the_worker_label_counts_only_when_it_names_a_task_of_this_cluster() -> None:
    def label(name: str) -> str | None:
        return recovery.worker_task({"labels": {"prefect.worker.name": name}}, CLUSTER)

    assert label(named(task(1))) == task(1)
    assert label(named(task(1, "another-cluster"))) is None
    assert label(named(task(1).replace("us-east-1", "eu-west-1"))) is None
    assert label(named(task(1).replace("123456789012", "999999999999"))) is None
    assert label(named(task(1).replace("arn:aws:", "arn:aws-cn:"))) is None
    assert label("arn:aws:ecs:us-east-1:123456789012:task:prefect-worker-cluster:") is None
    assert label(named(task(1)) + ":extra") is None
    assert label(task(1)) is None  # an ARN as such: no worker can carry that name
    assert label("ProcessWorker 6f1c0d5e-1111-2222-3333-444455556666") is None  # Prefect's default name
    assert recovery.worker_task(flow_run(1), CLUSTER) is None


def test_process_pool_runs_whose_worker_task_stopped_or_is_gone_are_judged_and_only_those() -> None:
    runs = [
        flow_run(1, worker=task(1), run_count=1, retries=1),  # STOPPED: handed back
        flow_run(2, worker=task(2), run_count=1, retries=0),  # MISSING: crashed
        flow_run(3, worker=task(3)),  # RUNNING and heard
        flow_run(4, worker=task(4, "another-cluster")),  # not ours to ask ECS about; heard
    ]
    ecs = FakeEcs({task(1): "STOPPED", task(2): "MISSING"})
    prefect = FakePrefect(runs, heard={"run-3", "run-4"})
    recovery.run(context(prefect, ecs=ecs))
    assert changes(prefect) == {"run-1": ("SCHEDULED", "AwaitingRetry"), "run-2": ("CRASHED", "Crashed")}
    assert ecs.asked == [sorted([task(1), task(2), task(3)])]
    assert prefect.changes[0][1]["message"].startswith(f"The ECS task of its worker {task(1)} stopped while")
    assert prefect.asked_heartbeats == [(["run-3", "run-4"], at(SILENCE), NOW.isoformat())]


def test_a_stopped_task_is_evidence_even_when_no_heartbeat_arrives_and_a_young_run() -> None:
    runs = [flow_run(1, worker=task(1), age=20), flow_run(2, worker=task(2))]
    prefect = FakePrefect(runs, heard=set())
    recovery.run(context(prefect, ecs=FakeEcs({task(1): "STOPPED", task(2): "STOPPED"})))
    assert set(changes(prefect)) == {"run-1", "run-2"}
    assert prefect.asked_heartbeats == []  # no run left whose silence could matter


def test_a_silent_run_under_a_live_worker_is_judged_when_other_runs_were_heard() -> None:
    runs = [
        flow_run(1, worker=task(1)),  # silent, its worker's other run heard
        flow_run(2, worker=task(1)),
        flow_run(3, worker=task(2), retries=0),  # silent, only another worker's run heard
        flow_run(4, age=SILENCE - 1),  # too young to have been silent that long
        flow_run(5),  # no task label (a worker from before this change): silent, others heard
    ]
    prefect = FakePrefect(runs, heard={"run-2"})
    recovery.run(context(prefect))
    assert changes(prefect) == {
        "run-1": ("SCHEDULED", "AwaitingRetry"),
        "run-3": ("CRASHED", "Crashed"),
        "run-5": ("SCHEDULED", "AwaitingRetry"),
    }
    message = dict(prefect.changes)
    assert message["run-1"]["message"].startswith(
        f"No heartbeat for {SILENCE} s while RUNNING, while its worker's other runs were heard and its worker's ECS "
        f"task {task(1)} is still running: its process died"
    )
    assert "while other runs of the pool were heard" in message["run-3"]["message"]
    assert "it names no worker task of this stack" in message["run-5"]["message"]
    # Every live run is asked about (a young one's beat is evidence that events arrive), the window is the silence.
    assert prefect.asked_heartbeats == [([f"run-{n}" for n in range(1, 6)], at(SILENCE), NOW.isoformat())]


def test_when_no_run_of_the_pool_was_heard_nothing_changes_and_the_job_fails_saying_so() -> None:
    runs = [flow_run(1, worker=task(1)), flow_run(2), flow_run(3, worker=task(3)), flow_run(4, worker=task(4))]
    lines: list[str] = []
    prefect = FakePrefect(runs, heard=set())
    with pytest.raises(recovery.RecoveryError, match="no heartbeat from any of the pool's 3 RUNNING run") as raised:
        recovery.run(context(prefect, ecs=FakeEcs({task(4): "STOPPED"}), lines=lines))
    assert list(changes(prefect)) == ["run-4"]  # the stopped task's run is still judged: it is evidence
    assert "run-1, run-2, run-3" in str(raised.value) and "silence proves nothing" in str(raised.value)


def test_a_ten_minute_heartbeat_outage_changes_nothing_minute_after_minute() -> None:
    """Runs started an hour ago, healthy (their worker tasks RUNNING), heard until the outage; then no heartbeat
    reaches Prefect for ten minutes while the controller runs every minute, with the stack's silence and with a
    silence far shorter than the outage: nothing is changed, and once silence could matter each minute fails."""
    for silence in (SILENCE, 150):
        clock = [NOW]
        outage_from = NOW + timedelta(minutes=1)
        runs = [flow_run(n, worker=task(n % 2)) for n in range(6)]
        prefect = FakePrefect(runs)
        failures = 0
        for minute in range(12):
            clock[0] = NOW + timedelta(minutes=minute)
            # Each run beat until the outage: heard while the window reaches back before it.
            prefect.heard = {r["id"] for r in runs} if clock[0] - timedelta(seconds=silence) < outage_from else set()
            try:
                recovery.run(context(prefect, now=lambda clock=clock: clock[0], silence=silence))
            except recovery.RecoveryError:
                failures += 1
        assert prefect.changes == [], silence
        assert failures == (0 if silence == SILENCE else 12 - 4), silence  # from 2.5 min into the outage


# -- ecs pool: the flow run's own task ---------------------------------------------------------------------------------


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
    assert prefect.asked_heartbeats == []  # an ecs pool never judges by silence


def test_describe_tasks_is_asked_100_at_a_time() -> None:
    runs = [flow_run(n, pid=f"{CLUSTER}::{task(n)}") for n in range(150)]
    ecs = FakeEcs()
    recovery.run(context(FakePrefect(runs), "ecs", ecs))
    assert [len(batch) for batch in ecs.asked] == [100, 50]


# -- PENDING: never started --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        (["SCHEDULED", "PENDING", "PENDING"], 1),  # Pending, Submitting: one submission, still pending
        (["SCHEDULED", "PENDING", "PENDING", "PENDING"], 1),  # ... InfrastructurePending too
        (["SCHEDULED", "PENDING", "RUNNING", "SCHEDULED", "PENDING"], 1),  # started once; now pending again
        (["SCHEDULED", "PENDING", "SCHEDULED", "PENDING", "PENDING"], 2),
        (["SCHEDULED", "PENDING", "CRASHED", "SCHEDULED", "PENDING"], 2),
        (["SCHEDULED", "PENDING", "SCHEDULED", "PENDING", "SCHEDULED", "PENDING", "SCHEDULED", "PENDING"], 4),
        (["SCHEDULED", "PENDING", "RUNNING", "CRASHED"], 0),
    ],
)
def test_failed_starts_count_submissions_that_never_reached_running(history: list[str], expected: int) -> None:
    assert recovery.failed_starts(states(*history)) == expected
    assert recovery.failed_starts(list(reversed(states(*history)))) == expected  # by time, not by order given


@pytest.mark.parametrize(("submissions", "expected"), [(1, "retry"), (2, "retry"), (3, "retry"), (4, "crash")])
@pytest.mark.parametrize("retries", [0, None, 2])
def test_a_stuck_pending_run_is_handed_back_three_times_whatever_its_retries_then_crashed(
    submissions: int, expected: str, retries: int | None
) -> None:
    history = states(*(["SCHEDULED", "PENDING", "PENDING"] * submissions), end=1000)
    runs = [
        flow_run(1, "PENDING", age=901, run_count=0, retries=retries, name="Submitting"),
        flow_run(2, "PENDING", age=899),
    ]
    prefect = FakePrefect(runs, histories={"run-1": history})
    recovery.run(context(prefect))
    assert [(run_id, state["type"]) for run_id, state in prefect.changes] == [
        ("run-1", {"retry": "SCHEDULED", "crash": "CRASHED"}[expected])
    ]
    message = prefect.changes[0][1]["message"]
    assert message.startswith("Pending for 15 min in work pool fargate-pool: submitted but never started")
    if expected == "retry":
        assert f"it never started, so it is handed back ({submissions} of 3)" in message
    else:
        assert "it never started in 4 submissions, after 3 hand-backs: crashed (prefect-fargate controller)." in message


def test_a_submitting_run_whose_worker_task_stopped_is_handed_back_at_once_a_stale_label_is_not_trusted() -> None:
    runs = [
        flow_run(1, "PENDING", age=30, run_count=0, worker=task(1), name="Submitting"),  # labelled by that worker
        flow_run(2, "PENDING", age=30, run_count=0, worker=task(1), name="Pending"),  # label from an earlier attempt
    ]
    prefect = FakePrefect(runs)
    recovery.run(context(prefect, ecs=FakeEcs({task(1): "STOPPED"})))
    assert changes(prefect) == {"run-1": ("SCHEDULED", "AwaitingRetry")}
    assert prefect.changes[0][1]["message"].startswith(
        f"Pending in work pool fargate-pool, and the ECS task of the worker that took it ({task(1)}) stopped;"
    )


# -- CRASHED by infrastructure -----------------------------------------------------------------------------------------


def crashed(n: int, message: str, run_count: int = 1, retries: int | None = 1) -> dict[str, Any]:
    return flow_run(n, "CRASHED", age=60, run_count=run_count, retries=retries, message=message)


def test_only_recent_crashed_runs_of_the_pool_are_listed_and_only_with_retry_crashed_runs() -> None:
    prefect = FakePrefect([])
    recovery.run(context(prefect, "ecs"))
    assert prefect.listed == [
        (["RUNNING", "PENDING"], {}),
        (["CRASHED"], {"end_time": {"after_": (NOW - timedelta(minutes=10)).isoformat()}}),
    ]
    off = FakePrefect([crashed(1, OBSERVER_EXIT)])
    recovery.run(context(off, "ecs", retry_crashed=False))
    assert off.listed == [(["RUNNING", "PENDING"], {})] and off.changes == []


@pytest.mark.parametrize(
    ("message", "run_count", "retries", "rerun"),
    [
        (OBSERVER_EXIT, 1, 1, True),  # an out-of-memory kill, a Spot stop...: attempt 2 of 2
        (OBSERVER_EXIT, 2, 1, False),  # no retries left
        (OBSERVER_EXIT, 1, 0, False),
        (OBSERVER_EXIT, 3, 3, True),
        ("Crashed by x; no retries left (2 attempt(s), retries=1) (prefect-fargate controller).", 2, 1, False),
        ("Crashed by x; ... (prefect-fargate controller).", 1, 1, True),  # the controller's own, with retries left
        ("Execution was aborted by an interrupt signal.", 1, 1, False),  # the flow engine's own crash
        ("Flow run encountered an exception: MemoryError", 1, 1, False),
        ("Flow run infrastructure exited with non-zero status code 1.", 1, 1, False),  # the process worker's
        (None, 1, 1, False),
        ("something else. " + OBSERVER_EXIT, 1, 1, False),  # only the observer's message as it writes it
    ],
)
def test_a_run_crashed_by_infrastructure_is_rerun_while_its_retries_allow_and_no_other(
    message: str | None, run_count: int, retries: int, rerun: bool
) -> None:
    prefect = FakePrefect(
        [crashed(1, message, run_count, retries)],
        histories={"run-1": states("SCHEDULED", "PENDING", "PENDING", "RUNNING", "CRASHED", end=60)},
    )
    prefect.histories["run-1"][-1]["id"] = "state-1"
    recovery.run(context(prefect, "ecs"))
    if not rerun:
        assert prefect.changes == []
        return
    ((run_id, state),) = prefect.changes
    assert run_id == "run-1" and (state["type"], state["name"]) == ("SCHEDULED", "AwaitingRetry")
    assert state["message"].startswith(f"Crashed by infrastructure, not by its flow ({message.removesuffix('.')})")
    assert f"handed back for attempt {run_count + 1} of {retries + 1}" in state["message"]


@pytest.mark.parametrize(("submissions", "rerun"), [(1, True), (3, True), (4, False)])
def test_a_task_that_failed_to_start_follows_the_hand_back_cap_whatever_its_retries(
    submissions: int, rerun: bool
) -> None:
    history = states(*(["SCHEDULED", "PENDING", "PENDING", "CRASHED"] * submissions), end=60)
    history[-1]["id"] = "state-1"
    prefect = FakePrefect([crashed(1, OBSERVER_START, run_count=0, retries=None)], histories={"run-1": history})
    recovery.run(context(prefect, "ecs"))
    assert changes(prefect) == ({"run-1": ("SCHEDULED", "AwaitingRetry")} if rerun else {})
    if rerun:
        assert f"it never started, so it is handed back ({submissions} of 3)" in prefect.changes[0][1]["message"]


def test_a_crashed_run_is_rerun_once_a_second_pass_finds_it_moved_on() -> None:
    prefect = FakePrefect([crashed(1, OBSERVER_EXIT)], histories={"run-1": states("PENDING", "RUNNING", "CRASHED")})
    prefect.histories["run-1"][-1]["id"] = "state-1"
    recovery.run(context(prefect, "ecs"))
    recovery.run(context(prefect, "ecs"))
    assert len(prefect.changes) == 1


# -- what is never done ------------------------------------------------------------------------------------------------


def test_a_run_whose_state_changed_since_it_was_judged_is_left_alone() -> None:
    prefect = FakePrefect([flow_run(1, worker=task(1))])
    judged = dict(prefect.runs["run-1"])
    prefect.pool_runs = lambda pool, types, **_: [judged] if "RUNNING" in types else []  # type: ignore[method-assign]
    prefect.runs["run-1"] = {**judged, "state": {"id": "state-new", "type": "COMPLETED"}}  # finished meanwhile
    recovery.run(context(prefect, ecs=FakeEcs({task(1): "STOPPED"})))
    assert prefect.changes == []


def test_a_failed_change_does_not_keep_the_others_from_theirs_and_is_reported() -> None:
    prefect = FakePrefect([flow_run(1, worker=task(1)), flow_run(2, worker=task(1))])
    real = prefect.set_state

    def set_state(run_id: str, state: dict[str, Any]) -> dict[str, Any]:
        if run_id == "run-1":
            raise PrefectError("Prefect API POST /flow_runs/run-1/set_state: HTTP 503 (Service Unavailable)")
        return real(run_id, state)

    prefect.set_state = set_state  # type: ignore[method-assign]
    with pytest.raises(recovery.RecoveryError, match="run-1"):
        recovery.run(context(prefect, ecs=FakeEcs({task(1): "STOPPED"})))
    assert list(changes(prefect)) == ["run-2"]


@pytest.mark.parametrize("failing", ["pool_runs", "runs_heard_from", "describe_tasks", "crashed listing"])
def test_anything_unreadable_changes_nothing(failing: str) -> None:
    runs = [
        flow_run(1, worker=task(1)),  # would be judged (its task stopped)
        flow_run(2, "PENDING", age=901, run_count=0),  # would be handed back
        crashed(3, OBSERVER_EXIT),  # would be re-run
        flow_run(4, worker=task(4)),  # alive: its silence needs the events
    ]
    prefect, ecs = FakePrefect(runs, heard={"run-4"}), FakeEcs({task(1): "STOPPED"})

    def fail(*_: Any, **__: Any) -> Any:
        raise PrefectError("Prefect API POST /flow_runs/filter: HTTP 503 (page 2)")

    listing = prefect.pool_runs
    if failing == "describe_tasks":
        ecs.describe_tasks = fail  # type: ignore[method-assign]
    elif failing == "crashed listing":
        prefect.pool_runs = lambda pool, types, **f: fail() if "CRASHED" in types else listing(pool, types, **f)  # type: ignore[method-assign]
    else:
        setattr(prefect, failing, fail)
    with pytest.raises(PrefectError):
        recovery.run(context(prefect, ecs=ecs))
    assert prefect.changes == []


# -- the deadline ------------------------------------------------------------------------------------------------------


def test_changes_stop_before_the_deadline_and_what_is_left_is_logged() -> None:
    clock = [0.0]

    class Slow(FakePrefect):
        def states(self, run_id: str) -> list[dict[str, Any]]:
            clock[0] += 2
            return super().states(run_id)

        def flow_run(self, run_id: str) -> dict[str, Any]:
            clock[0] += 2
            return super().flow_run(run_id)

        def set_state(self, run_id: str, state: dict[str, Any]) -> dict[str, Any]:
            clock[0] += 2
            return super().set_state(run_id, state)

    prefect = Slow([flow_run(n, "PENDING", age=901 + n, run_count=0) for n in range(10)])
    lines: list[str] = []
    ctx = context(prefect, lines=lines)
    ctx = Context(**{**ctx.__dict__, "time_left": lambda: 20 - clock[0]})
    recovery.run(ctx)
    assert clock[0] <= 20
    assert [run_id for run_id, _ in prefect.changes] == ["run-9", "run-8", "run-7"]  # oldest first, 6 s each
    (left,) = [line for line in lines if "out of time" in line]
    assert left.startswith("recovery: out of time, 7 left for the next minute: run-6, run-5")
