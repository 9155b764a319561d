"""Recovery: this pool's flow runs whose worker or task is gone are handed back, or crashed, as their flow allows.

Only this pool's runs are ever looked at: they are listed with a work-pool name filter (a local
`python flow.py`, `flow.serve()` or another pool's run is never selected, so never touched). A run is
acted on only when it is dead by the pool's signal:

- `ecs` pool: a RUNNING run's `infrastructure_pid` is `<cluster>::<task ARN>` (prefect_aws/workers/ecs_worker.py,
  `parse_identifier`); the run is dead when ECS `DescribeTasks` reports its task STOPPED or MISSING.
- `process` pool: `infrastructure_pid` is only a PID with no host (prefect/workers/process.py), so the signal
  is the run's own heartbeat events (`prefect.flow-run.heartbeat`), read through `POST /events/filter` for this
  pool's RUNNING run ids only. Chosen over a mark tying the run to its worker task because it needs nothing
  from the worker (a run's heartbeats come from the flow-run process itself, flow_engine.py), it also catches a
  flow-run process that died while its worker lives on, and the stack's runs beat every FLOW_HEARTBEAT_SECONDS
  (30 s, components/agent_service.py). A run is dead when neither its RUNNING state nor any heartbeat is newer
  than SILENCE_SECONDS (five beats: a late event or one slow beat is not a death).
- either pool: a PENDING run (submitted, never started) is stuck after STUCK_SECONDS (stuckRunMinutes).

The rule, the one Prefect applies to a failed run (`RetryFailedFlows`, prefect/server/orchestration/core_policy.py):
a dead RUNNING run with `run_count <= empirical_policy.retries` is put back to AwaitingRetry, so a worker of the
pool runs it again; otherwise it is CRASHED with a message saying what happened (the pool's notifications fire).
A stuck PENDING run counts its attempts by the Pending states in its history (run_count only counts starts,
and a run that never starts would otherwise be handed back forever). `retries` is None until the flow's
engine first starts (flow_engine.py writes the flow's `retries` then), and counts as 0.

Never on uncertainty: a run whose task ECS cannot answer for, whose `infrastructure_pid` names another
cluster or nothing, or whose heartbeats could not be read is left alone this minute. Before each change the
run is read again, and changed only if its state is still the one judged (same state id); the change goes
through orchestration (force false), so the server refuses CRASHED for a run that reached a final state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .context import Context

HEARTBEAT = "prefect.flow-run.heartbeat"
DESCRIBE_TASKS_BATCH = 100  # DescribeTasks takes at most 100 tasks


class RecoveryError(Exception):
    """Some changes could not be made (each named); they are tried again next minute."""


@dataclass(frozen=True)
class Verdict:
    """What to do with one run: `retry` (AwaitingRetry) or `crash`, and why (the state's message)."""

    run_id: str
    state_id: str  # the state judged: the change is made only while the run is still in it
    action: str
    message: str


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def retries_of(run: dict[str, Any]) -> int:
    return int((run.get("empirical_policy") or {}).get("retries") or 0)


def judge(run: dict[str, Any], attempts: int, why: str) -> Verdict:
    """AwaitingRetry while `attempts <= retries` (Prefect's own rule for a failed run), else CRASHED."""
    retries = retries_of(run)
    if attempts <= retries:
        action, outcome = "retry", f"handed back for attempt {attempts + 1} of {retries + 1}"
    else:
        action, outcome = "crash", f"no retries left ({attempts} attempt(s), retries={retries})"
    return Verdict(str(run["id"]), str(run["state"]["id"]), action, f"{why}; {outcome} (prefect-fargate controller).")


def ecs_task(run: dict[str, Any], cluster_arn: str) -> str | None:
    """The task ARN in a run's `infrastructure_pid` when it names this stack's cluster (by ARN or name), else None."""
    cluster, sep, task = (run.get("infrastructure_pid") or "").partition("::")
    if not sep or not task.startswith("arn:"):
        return None
    return task if cluster in (cluster_arn, cluster_arn.rsplit("/", 1)[-1]) else None


def stopped_tasks(ecs: Any, cluster_arn: str, tasks: list[str]) -> set[str]:
    """The tasks ECS reports STOPPED, or MISSING (stopped tasks are described for about an hour, then gone)."""
    stopped: set[str] = set()
    for start in range(0, len(tasks), DESCRIBE_TASKS_BATCH):
        answer = ecs.describe_tasks(cluster=cluster_arn, tasks=tasks[start : start + DESCRIBE_TASKS_BATCH])
        stopped.update(t["taskArn"] for t in answer.get("tasks", []) if t.get("lastStatus") == "STOPPED")
        stopped.update(f["arn"] for f in answer.get("failures", []) if f.get("reason") == "MISSING")
    return stopped


def dead_running_ecs(ctx: Context, running: list[dict[str, Any]]) -> list[Verdict]:
    tasks = {run["id"]: ecs_task(run, ctx.settings.cluster_arn) for run in running}
    for run_id, task in tasks.items():
        if task is None:
            ctx.log(f"recovery: flow run {run_id} names no task of this cluster; left alone")
    stopped = stopped_tasks(ctx.ecs, ctx.settings.cluster_arn, sorted({t for t in tasks.values() if t}))
    return [
        judge(run, run.get("run_count", 0), f"Its ECS task {tasks[run['id']]} stopped while the run was RUNNING")
        for run in running
        if tasks[run["id"]] in stopped
    ]


def dead_running_process(ctx: Context, running: list[dict[str, Any]], now: datetime) -> list[Verdict]:
    silence = timedelta(seconds=ctx.settings.silence_seconds)
    # Only runs RUNNING for longer than the silence can be silent for that long.
    old = [run for run in running if now - parse_time(run["state"]["timestamp"]) > silence]
    since, until = (now - silence).isoformat(), now.isoformat()
    heard = ctx.prefect.runs_heard_from([str(run["id"]) for run in old], HEARTBEAT, since, until)
    why = (
        f"No heartbeat for {ctx.settings.silence_seconds} s while RUNNING: the worker task or the flow-run "
        "process running it stopped or died"
    )
    return [judge(run, run.get("run_count", 0), why) for run in old if str(run["id"]) not in heard]


def stuck_pending(ctx: Context, pending: list[dict[str, Any]], now: datetime) -> list[Verdict]:
    stuck_after = timedelta(seconds=ctx.settings.stuck_seconds)
    verdicts = []
    for run in pending:
        if now - parse_time(run["state"]["timestamp"]) <= stuck_after:
            continue
        attempts = sum(1 for state in ctx.prefect.states(str(run["id"])) if state["type"] == "PENDING")
        minutes = ctx.settings.stuck_seconds / 60
        why = (
            f"Pending for {minutes:g} min in work pool {ctx.settings.pool_name}: submitted but never started (for "
            "an ecs pool its task could not start: see the ECS task's stopped reason; for a process pool the worker "
            "that took it stopped before starting it)"
        )
        verdicts.append(judge(run, attempts, why))
    return verdicts


def new_state(verdict: Verdict, now: datetime) -> dict[str, Any]:
    """AwaitingRetry is a SCHEDULED state due now (prefect/states.py, AwaitingRetry), as the engine proposes it."""
    if verdict.action == "retry":
        details = {"scheduled_time": now.isoformat()}
        return {"type": "SCHEDULED", "name": "AwaitingRetry", "message": verdict.message, "state_details": details}
    return {"type": "CRASHED", "name": "Crashed", "message": verdict.message}


def apply(ctx: Context, verdict: Verdict) -> str:
    """Make the change if the run is still in the state judged; returns what happened, for the log."""
    current = ctx.prefect.flow_run(verdict.run_id).get("state") or {}
    if str(current.get("id")) != verdict.state_id:
        return f"left alone: its state changed to {current.get('type')} meanwhile"
    result = ctx.prefect.set_state(verdict.run_id, new_state(verdict, ctx.now()))
    return f"{verdict.action}: {result.get('status')} ({(result.get('details') or {}).get('reason') or 'accepted'})"


def run(ctx: Context) -> list[Verdict]:
    """One pass over this pool's RUNNING and PENDING runs; returns the verdicts it acted on."""
    now = ctx.now()
    runs = ctx.prefect.pool_runs(ctx.settings.pool_name, ["RUNNING", "PENDING"])
    running = [run for run in runs if run["state"]["type"] == "RUNNING"]
    pending = [run for run in runs if run["state"]["type"] == "PENDING"]
    if ctx.settings.pool_type == "ecs":
        verdicts = dead_running_ecs(ctx, running)
    else:
        verdicts = dead_running_process(ctx, running, now)
    verdicts += stuck_pending(ctx, pending, now)
    failed = []
    for verdict in verdicts:  # one run's failed change does not keep the others from theirs
        try:
            ctx.log(f"recovery: flow run {verdict.run_id}: {apply(ctx, verdict)}: {verdict.message}")
        except Exception as exc:
            failed.append(f"flow run {verdict.run_id}: {exc}")
    ctx.log(f"recovery: {len(running)} running, {len(pending)} pending, {len(verdicts)} judged dead or stuck")
    if failed:
        raise RecoveryError("; ".join(failed))
    return verdicts
