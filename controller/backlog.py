"""The backlog job: how many workers the pool wants, published as CloudWatch metrics every minute.

`run(ctx)` reads this pool's flow runs with read-only calls only, `POST /flow_runs/count` and
`POST /flow_runs/filter` (prefect/server/api/flow_runs.py, `count_flow_runs` and `read_flow_runs`),
filtered on the pool (`work_pools: {name: {any_: [pool]}}`, schemas/filters.py `WorkPoolFilterName`)
and on state type, state name and times (`FlowRunFilterState`, `FlowRunFilterNextScheduledStartTime`,
`FlowRunFilterStartTime`, `FlowRunFilterEndTime`). Never `POST /work_pools/{name}/get_scheduled_flow_runs`:
that counts as a worker's poll and marks the pool READY (prefect/server/api/workers.py), hiding "no worker".

Due means by `next_scheduled_start_time`, never `expected_start_time`: the server sets the latter from a run's
first state only (prefect/server/orchestration/global_policy.py, `SetExpectedStartTime`), so a rescheduled run
(AwaitingRetry with a delay, AwaitingConcurrencySlot, a manual reschedule) keeps its first one, while
`next_scheduled_start_time` follows each scheduled state (`SetNextScheduledStartTime`). It is what a worker's
poll selects on (prefect/server/models/work_queues.py and database/query_components.py,
`next_scheduled_start_time <= scheduled_before`) and what the server's Late-run service ages and stamps on the
Late state (prefect/server/services/late_runs.py), so waiting runs are aged by it too. That service marks only
runs named Scheduled Late, so a run handed back (AwaitingRetry, due at once) that no worker takes never turns
Late: `OldestLateRunAge` is therefore the age of the oldest SCHEDULED-type run whose next scheduled start has
passed (a Late run, or one handed back or retried and not taken), the "due and no worker coming" that the
late-runs alarm is for.

It publishes, in namespace `BACKLOG_NAMESPACE` (the stack's `prefect-fargate-<stack>`) with the one
dimension `WorkPool=<pool>`:
- `WorkersWanted` (Count), every minute: the scaling alarm follows it (components/worker_scaling.py);
- `RunsDue` (Scheduled runs due to start within the lead time, Late ones included), `RunsLate`,
  `RunsPending`, `RunsRunning` (Count), `OldestLateRunAge` (Seconds) and `StartDelayP50` (Seconds, expected
  start to start, over the pool's last `START_DELAY_RUNS` runs started in the last hour): only while the
  pool is busy (anything due, Late, Pending or Running, or a run ended within the quiet period).
CloudWatch bills a custom metric by the hours it has data and PutMetricData by the request, so an idle
pool sends `WorkersWanted` alone for the first `IDLE_TAIL` of idleness (when the count drops to minWorkers),
then nothing until it is busy again: scaling needs no idle data (the last value sent set minWorkers, and missing
data moves nothing), and the controller's own liveness is watched on Lambda's free Invocations and Errors metrics
(components/alerts.py), not on this metric.

Environment: the controller's WORK_POOL and WORK_POOL_TYPE (controller/context.py), and, set by
components/worker_scaling.py through the controller's `environment`: BACKLOG_NAMESPACE, BACKLOG_RUN_LIMIT
(a process worker's --limit), BACKLOG_MIN_WORKERS, BACKLOG_MAX_WORKERS, BACKLOG_LEAD_MINUTES,
BACKLOG_QUIET_MINUTES.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from controller.prefect_rest import pool_filter

START_DELAY_RUNS = 20
START_DELAY_WINDOW = timedelta(hours=1)
# Published every minute for this long after the quiet period ends, so the drop to minWorkers is sent at once.
IDLE_TAIL = timedelta(minutes=3)


class PrefectReader(Protocol):
    """controller/prefect_rest.py's `PrefectRest`: JSON over HTTP to the stack's Prefect API."""

    def request(self, method: str, path: str, body: Any = None) -> Any: ...


@dataclass(frozen=True, kw_only=True)
class BacklogSettings:
    namespace: str
    work_pool: str
    pool_type: str  # "process" or "ecs"
    run_limit: int  # a process worker's --limit
    min_workers: int
    max_workers: int
    lead: timedelta  # a run due this soon counts as due
    quiet: timedelta  # after the last run ends, one worker stays this long before going to min_workers

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> BacklogSettings:
        return cls(
            namespace=environ["BACKLOG_NAMESPACE"],
            work_pool=environ["WORK_POOL"],
            pool_type=environ["WORK_POOL_TYPE"],
            run_limit=int(environ["BACKLOG_RUN_LIMIT"]),
            min_workers=int(environ["BACKLOG_MIN_WORKERS"]),
            max_workers=int(environ["BACKLOG_MAX_WORKERS"]),
            lead=timedelta(minutes=int(environ["BACKLOG_LEAD_MINUTES"])),
            quiet=timedelta(minutes=int(environ["BACKLOG_QUIET_MINUTES"])),
        )


@dataclass(frozen=True, kw_only=True)
class Backlog:
    """What the pool holds at one moment."""

    due: int  # SCHEDULED-type runs (Scheduled, Late, AwaitingRetry, ...) whose next scheduled start is by now + lead
    late: int
    pending: int
    running: int
    oldest_late_seconds: float  # the oldest SCHEDULED-type run past its next scheduled start (Late or not); 0: none
    start_delay_p50_seconds: float | None  # None: no run started in the last hour
    last_end_seconds: float | None  # since the pool's latest run ended; None: none within quiet + IDLE_TAIL
    quiet_seconds: float  # the quiet period (BacklogSettings.quiet)

    @property
    def idle(self) -> bool:
        """Nothing due, Late, Pending or Running, and no run ended within the quiet period."""
        ended_lately = self.last_end_seconds is not None and self.last_end_seconds <= self.quiet_seconds
        return not (self.due or self.late or self.pending or self.running or ended_lately)

    @property
    def publish_now(self) -> bool:
        """Every minute unless idle beyond IDLE_TAIL (`last_end_seconds` is None once the tail is over)."""
        return not self.idle or self.last_end_seconds is not None


def workers_wanted(backlog: Backlog, settings: BacklogSettings) -> int:
    """Enough workers for the due, pending and running runs at a process worker's --limit; for an `ecs`
    pool one worker while anything is due or pending (its runs are tasks of their own). While runs are
    running elsewhere (an `ecs` pool's, whose task events the worker's observer follows) and for the quiet
    period after the last run ends, one worker stays; then min_workers."""
    if settings.pool_type == "ecs":
        need = 1 if backlog.due or backlog.pending else 0
    else:
        need = math.ceil((backlog.due + backlog.pending + backlog.running) / settings.run_limit)
    if need == 0 and not backlog.idle:
        need = 1
    return max(settings.min_workers, min(settings.max_workers, need))


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def read_backlog(prefect: PrefectReader, settings: BacklogSettings, now: datetime) -> Backlog:
    """Six read-only calls (seven with a run past its start): three counts and three filters, each limited to the
    pool."""

    def count(flow_runs: dict[str, Any]) -> int:
        return int(
            prefect.request("POST", "/flow_runs/count", {**pool_filter(settings.work_pool), "flow_runs": flow_runs})
        )

    def runs(body: dict[str, Any]) -> list[dict[str, Any]]:
        return list(prefect.request("POST", "/flow_runs/filter", {**pool_filter(settings.work_pool), **body}))

    def state(types: list[str] | None = None, names: list[str] | None = None) -> dict[str, Any]:
        given = {"type": {"any_": types} if types else None, "name": {"any_": names} if names else None}
        return {"state": {key: value for key, value in given.items() if value is not None}}

    due = count({**state(types=["SCHEDULED"]), "next_scheduled_start_time": {"before_": _iso(now + settings.lead)}})
    pending = count(state(types=["PENDING"]))
    running = count(state(types=["RUNNING"]))
    ended = runs(
        {
            "flow_runs": {"end_time": {"after_": _iso(now - settings.quiet - IDLE_TAIL)}},
            "sort": "END_TIME_DESC",
            "limit": 1,
        }
    )
    oldest = runs(
        {
            "flow_runs": {**state(types=["SCHEDULED"]), "next_scheduled_start_time": {"before_": _iso(now)}},
            "sort": "NEXT_SCHEDULED_START_TIME_ASC",
            "limit": 1,
        }
    )
    late = count(state(names=["Late"])) if oldest else 0  # a Late run is past its start: none without one
    oldest_late = (now - _parse(oldest[0]["next_scheduled_start_time"])).total_seconds() if oldest else 0.0
    started = runs(
        {
            "flow_runs": {"start_time": {"after_": _iso(now - START_DELAY_WINDOW)}},
            "sort": "START_TIME_DESC",
            "limit": START_DELAY_RUNS,
        }
    )
    return Backlog(
        due=due,
        late=late,
        pending=pending,
        running=running,
        oldest_late_seconds=max(0.0, oldest_late),
        start_delay_p50_seconds=start_delay_p50(started),
        last_end_seconds=max(0.0, (now - _parse(ended[0]["end_time"])).total_seconds()) if ended else None,
        quiet_seconds=settings.quiet.total_seconds(),
    )


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def start_delay_p50(runs: list[dict[str, Any]]) -> float | None:
    """Median seconds from expected start to start over runs that have both (a late pickup's wait)."""
    delays = [
        max(0.0, (_parse(run["start_time"]) - _parse(run["expected_start_time"])).total_seconds())
        for run in runs
        if run.get("start_time") and run.get("expected_start_time")
    ]
    return statistics.median(delays) if delays else None


def metric_data(backlog: Backlog, wanted: int, work_pool: str, now: datetime) -> list[dict[str, Any]]:
    """PutMetricData's MetricData: WorkersWanted always, the rest while the pool is not idle."""
    dimensions = [{"Name": "WorkPool", "Value": work_pool}]

    def datum(name: str, value: float, unit: str) -> dict[str, Any]:
        return {"MetricName": name, "Dimensions": dimensions, "Timestamp": now, "Value": value, "Unit": unit}

    data = [datum("WorkersWanted", wanted, "Count")]
    if backlog.idle:
        return data
    data += [
        datum("RunsDue", backlog.due, "Count"),
        datum("RunsLate", backlog.late, "Count"),
        datum("RunsPending", backlog.pending, "Count"),
        datum("RunsRunning", backlog.running, "Count"),
        datum("OldestLateRunAge", backlog.oldest_late_seconds, "Seconds"),
    ]
    if backlog.start_delay_p50_seconds is not None:
        data.append(datum("StartDelayP50", backlog.start_delay_p50_seconds, "Seconds"))
    return data


def tick(prefect: PrefectReader, cloudwatch: Any, settings: BacklogSettings, now: datetime) -> int:
    """Read the backlog, publish it (see `Backlog.publish_now`), return the workers wanted. An error on the way
    publishes nothing, so the scaling alarm sees no data and leaves the worker count alone."""
    backlog = read_backlog(prefect, settings, now)
    wanted = workers_wanted(backlog, settings)
    if not backlog.publish_now:
        return wanted
    cloudwatch.put_metric_data(
        Namespace=settings.namespace, MetricData=metric_data(backlog, wanted, settings.work_pool, now)
    )
    return wanted


def run(ctx: Any) -> None:
    """The controller's job (controller/handler.py, controller/context.py's Context)."""
    wanted = tick(ctx.prefect, ctx.cloudwatch, BacklogSettings.from_environ(ctx.env), ctx.now())
    ctx.log(f"backlog: {wanted} worker(s) wanted")
