"""Recovery: this pool's flow runs whose worker or task is gone are handed back, or crashed, as their flow allows.

Only this pool's runs are ever looked at: they are listed with a work-pool name filter (a local
`python flow.py`, `flow.serve()` or another pool's run is never selected, so never touched). A run is changed
only on positive evidence that its process is gone; a missing event, page or reply changes nothing.

RUNNING runs, by the pool's evidence:
- `ecs` pool: a run's `infrastructure_pid` is `<cluster>::<task ARN>` (prefect_aws/workers/ecs_worker.py,
  `parse_identifier`); the run is dead when ECS `DescribeTasks` reports its task STOPPED or MISSING.
- `process` pool: a worker labels each run it submits with its name (`prefect.worker.name`, prefect/workers/base.py
  `_give_worker_labels_to_flow_run`, before its Pending proposal; a later submission by another worker relabels
  it, models/flow_runs.py `update_flow_run_labels` merges), and the stack's worker is named after its own ECS task
  (agent_image/worker_supervisor.py: the task ARN, `/` written `:`). The run is dead when `DescribeTasks` reports
  that task STOPPED or MISSING.
  Heartbeat events (`prefect.flow-run.heartbeat`, every FLOW_HEARTBEAT_SECONDS) serve only as a fallback, for a
  flow-run process that died under a live worker (or a run with no task label): a run unheard for
  SILENCE_SECONDS is dead only if other runs of the pool (its worker's, or the pool's) were heard in that window.
  If none was heard, heartbeats are not reaching Prefect (a proxy that drops websockets, an events rate limit):
  nothing is changed, and the job fails so that the controller-errors alarm says so.
  A dead RUNNING run with `run_count <= empirical_policy.retries` goes back to AwaitingRetry (Prefect's own rule
  for a failed run, `RetryFailedFlows` in prefect/server/orchestration/core_policy.py); otherwise CRASHED.
  `retries` is None until the flow's engine first starts (flow_engine.py writes it then) and counts as 0.

PENDING runs (submitted, never started) did no work: one Pending longer than STUCK_SECONDS (or, on a process
pool, one whose worker labelled it, i.e. Submitting, and whose worker's task stopped) is handed back whatever its
`retries`, up to HAND_BACK_CAP times (counted from its state history: submissions that never reached RUNNING),
then CRASHED with a message that says so.

CRASHED runs (RETRY_CRASHED_RUNS): a run whose crash came from infrastructure, not from its flow, is re-run. That
is a CRASHED state newer than CRASH_LOOKBACK whose message is one prefect-aws's ECS observer writes
(prefect_aws/observers/ecs.py `mark_runs_as_crashed`: a container that exited non-zero, a task that failed to
start) or this controller's own. It goes to AwaitingRetry while `run_count <= retries`; an attempt that had not
started when it crashed follows the PENDING cap instead. That rule is `rerun`, which the notify job asks too (a run
recovery will re-run has not ended, so it is not reported). A FAILED run, a run crashed by its own code (the flow
engine's messages) and another pool's run are never touched. CRASHED to AwaitingRetry needs no `force`:
`HandleFlowTerminalStateTransitions` (core_policy.py) aborts only CRASHED/PAUSED/CANCELLING proposals out of a
terminal state, and a SCHEDULED one for a run without a deployment (a pool's run has one).

Each change is made as soon as it is judged: the run is read again and changed only if its state is still the
one judged (same state id), through orchestration (force false), so a run that moved on is left alone and a
state is changed once. Judging stops before the invocation's deadline (`Context.time_left`); what is left is
logged and done next minute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .context import Context, each_in_time

HEARTBEAT = "prefect.flow-run.heartbeat"
WORKER_LABEL = "prefect.worker.name"
DESCRIBE_TASKS_BATCH = 100  # DescribeTasks takes at most 100 tasks
HAND_BACK_CAP = 3  # a run that never started is handed back at most this many times, then crashed
CRASH_LOOKBACK = timedelta(minutes=10)  # infrastructure crashes newer than this are re-run (ten chances)
CONTROLLER = "(prefect-fargate controller)"  # ends every message this controller writes
# The messages of prefect_aws/observers/ecs.py `mark_runs_as_crashed` (prefect-aws 0.7.12).
OBSERVER_CRASHES = ("The following containers stopped with a non-zero exit code: ", "ECS task failed to start: ")


class RecoveryError(Exception):
    """Some runs could not be judged or changed (each named); they are tried again next minute."""


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


def verdict(run: dict[str, Any], action: str, message: str) -> Verdict:
    return Verdict(str(run["id"]), str(run["state"]["id"]), action, f"{message} {CONTROLLER}.")


def judge(run: dict[str, Any], attempts: int, why: str) -> Verdict:
    """AwaitingRetry while `attempts <= retries` (Prefect's own rule for a failed run), else CRASHED."""
    retries = retries_of(run)
    if attempts <= retries:
        return verdict(run, "retry", f"{why}; handed back for attempt {attempts + 1} of {retries + 1}")
    return verdict(run, "crash", f"{why}; no retries left ({attempts} attempt(s), retries={retries})")


def failed_starts(history: list[dict[str, Any]]) -> int:
    """Submissions that never reached RUNNING: each entry into PENDING from another state (Pending, Submitting and
    InfrastructurePending are one submission) followed by anything but RUNNING, or by nothing yet."""
    failed, pending = 0, False
    for state in sorted(history, key=lambda s: parse_time(s["timestamp"])):
        if state["type"] == "PENDING":
            pending = True
        elif pending:
            pending = False
            failed += state["type"] != "RUNNING"
    return failed + pending


def hand_back_unstarted(run: dict[str, Any], failed: int, why: str) -> Verdict:
    """A run that never started did no work: handed back whatever its retries while it has been handed back fewer
    than HAND_BACK_CAP times (`failed` counts this attempt), else CRASHED."""
    if failed <= HAND_BACK_CAP:
        return verdict(run, "retry", f"{why}; it never started, so it is handed back ({failed} of {HAND_BACK_CAP})")
    return verdict(
        run, "crash", f"{why}; it never started in {failed} submissions, after {HAND_BACK_CAP} hand-backs: crashed"
    )


# -- which task ------------------------------------------------------------------------------------------------


def task_prefix(cluster_arn: str) -> str:
    """`arn:<partition>:ecs:<region>:<account>:task/<cluster>/`: how every task ARN of this cluster starts."""
    head, _, name = cluster_arn.partition(":cluster/")
    return f"{head}:task/{name}/"


def ecs_task(run: dict[str, Any], cluster_arn: str) -> str | None:
    """The task ARN in a run's `infrastructure_pid` when it names this stack's cluster (by ARN or name), else None."""
    cluster, sep, task = (run.get("infrastructure_pid") or "").partition("::")
    if not sep or not task.startswith("arn:"):
        return None
    return task if cluster in (cluster_arn, cluster_arn.rsplit("/", 1)[-1]) else None


def worker_task(run: dict[str, Any], cluster_arn: str) -> str | None:
    """The task ARN the run's `prefect.worker.name` label names when it is a task of this cluster, else None (a
    worker from before the supervisor named it, or one that is not the stack's). The name is the ARN with each `/`
    written `:` (Prefect refuses `/` in a worker name: agent_image/worker_supervisor.py, `worker_name`)."""
    name = str((run.get("labels") or {}).get(WORKER_LABEL) or "")
    prefix = task_prefix(cluster_arn)
    task_id = name.removeprefix(prefix.replace("/", ":"))
    return prefix + task_id if task_id != name and task_id and not set(task_id) & {":", "/"} else None


def stopped_tasks(ecs: Any, cluster_arn: str, tasks: list[str]) -> set[str]:
    """The tasks ECS reports STOPPED, or MISSING (stopped tasks are described for about an hour, then gone)."""
    stopped: set[str] = set()
    for start in range(0, len(tasks), DESCRIBE_TASKS_BATCH):
        answer = ecs.describe_tasks(cluster=cluster_arn, tasks=tasks[start : start + DESCRIBE_TASKS_BATCH])
        stopped.update(t["taskArn"] for t in answer.get("tasks", []) if t.get("lastStatus") == "STOPPED")
        stopped.update(f["arn"] for f in answer.get("failures", []) if f.get("reason") == "MISSING")
    return stopped


# -- RUNNING ------------------------------------------------------------------------------------------------------


@dataclass
class Judged:
    """What one pass found: verdicts to apply, and what it could not see (the job then fails)."""

    verdicts: list[Verdict]
    problems: list[str]


def dead_running(
    ctx: Context, running: list[dict[str, Any]], now: datetime, tasks: dict[str, str | None], stopped: set[str]
) -> Judged:
    """Runs whose task (`tasks`: run id -> the task it names, from `run`) stopped; on a process pool also the
    corroborated silent ones."""
    ecs_pool = ctx.settings.pool_type == "ecs"
    found = Judged([], [])
    alive = []
    for run in running:
        task = tasks[str(run["id"])]
        if task in stopped:
            whose = "Its ECS task" if ecs_pool else "The ECS task of its worker"
            found.verdicts.append(
                judge(run, run.get("run_count", 0), f"{whose} {task} stopped while the run was RUNNING")
            )
        elif task is None and ecs_pool:
            ctx.log(f"recovery: flow run {run['id']} names no task of this cluster; left alone")
        else:
            alive.append(run)
    if not ecs_pool:
        silent, problem = silent_runs(ctx, alive, now, tasks)
        found.verdicts += silent
        found.problems += [problem] if problem else []
    return found


def silent_runs(
    ctx: Context, alive: list[dict[str, Any]], now: datetime, tasks: dict[str, str | None]
) -> tuple[list[Verdict], str | None]:
    """Of the runs no stopped task accounts for, those unheard for the silence while other runs of the pool were
    heard; when none was heard at all, none, and the problem to report."""
    seconds = ctx.settings.silence_seconds
    silence = timedelta(seconds=seconds)
    # Only runs RUNNING for longer than the silence can be silent for that long.
    old = [run for run in alive if now - parse_time(run["state"]["timestamp"]) > silence]
    if not old:
        return [], None
    heard = ctx.prefect.runs_heard_from(
        [str(run["id"]) for run in alive], HEARTBEAT, (now - silence).isoformat(), now.isoformat()
    )
    silent = [run for run in old if str(run["id"]) not in heard]
    if silent and not heard:
        ids = ", ".join(str(run["id"]) for run in silent)
        return [], (
            f"no heartbeat from any of the pool's {len(alive)} RUNNING run(s) in {seconds} s: heartbeat events are "
            f"not reaching Prefect (a proxy that drops websockets? an events rate limit?), so silence proves nothing; "
            f"left as they are: {ids}"
        )
    workers_heard = {worker_of(run) for run in alive if str(run["id"]) in heard}
    verdicts = []
    for run in silent:
        others = "its worker's other runs" if worker_of(run) in workers_heard - {""} else "other runs of the pool"
        task = tasks[str(run["id"])]
        where = f"its worker's ECS task {task} is still running" if task else "it names no worker task of this stack"
        why = f"No heartbeat for {seconds} s while RUNNING, while {others} were heard and {where}: its process died"
        verdicts.append(judge(run, run.get("run_count", 0), why))
    return verdicts, None


def worker_of(run: dict[str, Any]) -> str:
    return str((run.get("labels") or {}).get(WORKER_LABEL) or "")


# -- PENDING and CRASHED ---------------------------------------------------------------------------------------------


def stuck_pending(ctx: Context, run: dict[str, Any], reason: str) -> Verdict:
    """A Pending run that will not start, handed back or crashed by its count of failed starts."""
    history = ctx.prefect.states(str(run["id"]))
    return hand_back_unstarted(run, failed_starts(history), reason)


def crashed_by_infrastructure(run: dict[str, Any]) -> bool:
    message = str((run.get("state") or {}).get("message") or "")
    return message.startswith(OBSERVER_CRASHES) or message.endswith(f"{CONTROLLER}.")


def ended_after(run: dict[str, Any], since: datetime) -> bool:
    """Whether the run ended after `since`: its `end_time` (the server's, set when it entered a final state), else
    its state's time."""
    return parse_time(run.get("end_time") or run["state"]["timestamp"]) > since


def rerun(ctx: Context, run: dict[str, Any], now: datetime) -> Verdict | None:
    """The re-run recovery gives a CRASHED run, or None: with RETRY_CRASHED_RUNS, a crash by infrastructure that
    ended within CRASH_LOOKBACK and that its flow's retries (an attempt that never started: the hand-back cap)
    allow. The one predicate for it: the notify job (controller/notify.py) asks it too, so that a run recovery will
    re-run, even one it had no time for this minute, is never reported as ended."""
    if not (
        ctx.settings.retry_crashed
        and run["state"]["type"] == "CRASHED"
        and crashed_by_infrastructure(run)
        and ended_after(run, now - CRASH_LOOKBACK)
    ):
        return None
    return rerun_crashed(ctx, run)


def rerun_crashed(ctx: Context, run: dict[str, Any]) -> Verdict | None:
    """A run crashed by infrastructure: re-run while its flow's retries allow (an attempt that had not started:
    while under the hand-back cap); else None, and it stays CRASHED."""
    history = sorted(ctx.prefect.states(str(run["id"])), key=lambda s: parse_time(s["timestamp"]))
    ids = [str(state["id"]) for state in history]
    at = ids.index(str(run["state"]["id"])) if str(run["state"]["id"]) in ids else len(history)
    before = history[at - 1]["type"] if at > 0 else None
    why = f"Crashed by infrastructure, not by its flow ({run['state']['message'].removesuffix('.')})"
    if before == "PENDING":
        found = hand_back_unstarted(run, failed_starts(history[: at + 1]), why)
    else:
        found = judge(run, run.get("run_count", 0), why)
    return found if found.action == "retry" else None


# -- applying ------------------------------------------------------------------------------------------------------


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


def applied(ctx: Context, found: Verdict | None) -> Verdict | None:
    """Apply a verdict (if any) and log what happened."""
    if found is not None:
        ctx.log(f"recovery: flow run {found.run_id}: {apply(ctx, found)}: {found.message}")
    return found


Step = tuple[str, Callable[[], Verdict | None]]


def run(ctx: Context) -> list[Verdict]:
    """One pass over this pool's RUNNING, PENDING and recently CRASHED runs; returns the verdicts it applied."""
    now = ctx.now()
    settings = ctx.settings
    runs = ctx.prefect.pool_runs(settings.pool_name, ["RUNNING", "PENDING"])
    running = [run for run in runs if run["state"]["type"] == "RUNNING"]
    pending = [run for run in runs if run["state"]["type"] == "PENDING"]
    crashed = []
    if settings.retry_crashed:
        since = {"end_time": {"after_": (now - CRASH_LOOKBACK).isoformat()}}
        listed = ctx.prefect.pool_runs(settings.pool_name, ["CRASHED"], **since)
        crashed = [r for r in listed if crashed_by_infrastructure(r)]

    ecs_pool = settings.pool_type == "ecs"
    named = ecs_task if ecs_pool else worker_task  # the task whose stop shows the run's process is gone
    tasks = {str(run["id"]): named(run, settings.cluster_arn) for run in running + ([] if ecs_pool else pending)}
    stopped = stopped_tasks(ctx.ecs, settings.cluster_arn, sorted({t for t in tasks.values() if t}))
    judged = dead_running(ctx, running, now, tasks, stopped)

    steps: list[Step] = [(v.run_id, lambda v=v: v) for v in judged.verdicts]
    stuck_after = timedelta(seconds=settings.stuck_seconds)
    pool = f"work pool {settings.pool_name}"
    for run in sorted(pending, key=lambda r: r["state"]["timestamp"]):
        task = tasks.get(str(run["id"]))
        # The worker labels a run after its Pending is accepted and before Submitting (prefect/workers/base.py,
        # `_submit_run` then `_submit_run_and_capture_errors`): only past "Pending" is the label this submission's.
        if task in stopped and run["state"].get("name") != "Pending":
            why = f"Pending in {pool}, and the ECS task of the worker that took it ({task}) stopped"
        elif now - parse_time(run["state"]["timestamp"]) > stuck_after:
            why = (
                f"Pending for {settings.stuck_seconds / 60:g} min in {pool}: submitted but never started (for an ecs "
                "pool its task could not start: see the ECS task's stopped reason; for a process pool the worker "
                "that took it stopped before starting it)"
            )
        else:
            continue
        steps.append((str(run["id"]), lambda run=run, why=why: stuck_pending(ctx, run, why)))
    steps += [(str(run["id"]), lambda run=run: rerun(ctx, run, now)) for run in crashed]

    changed, failed, left = each_in_time(ctx, [(run_id, lambda s=step: applied(ctx, s())) for run_id, step in steps])
    ctx.log(
        f"recovery: {len(running)} running, {len(pending)} pending, {len(crashed)} crashed by infrastructure lately; "
        f"{len(changed)} changed"
    )
    if left:
        ctx.log(f"recovery: out of time, {len(left)} left for the next minute: {', '.join(left)}")
    if failed or judged.problems:
        raise RecoveryError("; ".join(judged.problems + failed))
    return changed
