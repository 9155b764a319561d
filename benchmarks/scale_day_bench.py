"""A simulated day of a scaled worker service against a real local Prefect server; prints Markdown tables.

    python benchmarks/scale_day_bench.py

Two schedules, each run twice (one always-on worker; minWorkers 0 and a maxWorkers), every run a real
flow run of its own pool on a local `prefect server` (127.0.0.1, SQLite):
- nightly: 20 runs of 5 minutes, one every 3 minutes from 02:00 to 02:57;
- burst: 100 runs of 2 minutes, all due at 12:00 (scheduled, so the controller sees them a lead time early);
- triggered burst: the same 100 runs triggered at 12:00 (seen only when due: lead time 0).

How time is compressed: a simulated clock, stepped every 5 s (the worker's poll interval,
components/agent_service.py WORKER_QUERY_SECONDS) while anything is due, pending or running, and jumped
over idle stretches. Runs are scheduled at `SIM_EPOCH` (real now + 3 days, so the server's Late-run
service leaves them Scheduled) plus their offset in the day. Every minute the controller's decision
(controller/backlog.py `read_backlog` + `workers_wanted`) reads the real server with `now` = the simulated
clock, and the scaling policy turns it into a task count (components/worker_scaling.py's steps: the wanted
count rounded up to the next step). The server stamps start and end times with the real clock, so the time
since the pool's last run ended (the quiet period's input) comes from the simulator's own record (the only
input replaced).

Workers are simulated: each polls every 5 s and claims up to --limit (4 for the default 1 GB task,
agent_service.run_limit) runs due within PREFETCH_SECONDS, by filtering the pool's Scheduled runs on
`next_scheduled_start_time` as a worker's poll does and setting them Running through the API; a run starts
RUN_START_SECONDS after its claim (pickup to engine start measured at 4.4-5.4 s, FACTS.md) and is set
Completed after its duration. A new worker is ready SCALE_OUT_SECONDS after the controller asks for it:
the alarm's next evaluation and the policy (up to 60 s) plus Fargate starting the task
(TASK_START_SECONDS, an assumption from AWS's guidance; see the README) plus the worker's first poll
(measured below). An idle worker above the wanted count stops at once; a busy one is protected
(agent_image/task_protection.py) and stops when idle.

Also measured here: one controller decision against the server (six read calls), and a real worker's
start to its first poll (the pool turning READY), the parts of a scale from zero that run locally. And what the
controller publishes on the way (`Backlog.publish_now`, `metric_data`): the clock hours each backlog metric has
data in and the PutMetricData requests, which CloudWatch bills. The nightly team's whole stack a month is then the
measured Fargate time and metrics plus the fixed items devtools/costs.py prices from the program's own resources
(rendered under the mocks for that stack's config), alarms on and off.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from prefect_servers import BIN, Server, nowhere  # noqa: E402

from components.agent_service import WORKER_QUERY_SECONDS, run_limit  # noqa: E402
from components.worker_scaling import step_values  # noqa: E402
from controller.backlog import BacklogSettings, metric_data, read_backlog, workers_wanted  # noqa: E402
from controller.prefect_rest import PrefectRest  # noqa: E402
from devtools import costs  # noqa: E402
from devtools.mocks import BASE_CONFIG, run_program  # noqa: E402

STEP = WORKER_QUERY_SECONDS
PREFETCH_SECONDS = 10  # PREFECT_WORKER_PREFETCH_SECONDS' default
RUN_START_SECONDS = 5
TASK_START_SECONDS = 60
ALARM_SECONDS = 60
LIMIT = run_limit(1024)
# Fargate list prices (devtools/costs.py): the default 0.5 vCPU + 1 GB task, Linux/x86.
TASK_HOUR = costs.fargate_hour(512, 1024, "X86_64")
IPV4_HOUR = costs.PUBLIC_IPV4_HOUR
MONTH_DAYS = costs.HOURS_PER_MONTH / 24
# The nightly team's stack (README's headline): scaled to zero between runs, at most two workers, alerts by email.
NIGHTLY_CONFIG = {**BASE_CONFIG, "minWorkers": "0", "maxWorkers": "2", "alertEmail": "oncall@example.com"}


@dataclass
class Run:
    run_id: str
    expected: float  # seconds into the day
    duration: float
    start: float | None = None
    end: float | None = None


@dataclass
class Worker:
    ready_at: float
    launched_at: float
    next_poll: float
    runs: list[Run] = field(default_factory=list)
    stopped_at: float | None = None


def schedule(name: str) -> list[tuple[float, float]]:
    """(expected start, duration) in seconds into the day."""
    if name == "nightly":
        return [(2 * 3600 + 180 * i, 300) for i in range(20)]  # "burst" and "triggered burst" alike:
    return [(12 * 3600, 120)] * 100


def policy_capacity(wanted: int, max_workers: int) -> int:
    """The task count the scaling policy sets for a WorkersWanted value: the next step value up."""
    return min(value for value in step_values(max_workers) if value >= wanted)


def create_runs(server: Server, pool: str, epoch: datetime, runs: list[tuple[float, float]]) -> list[Run]:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.states import Scheduled

    with SyncPrefectClient(server.url) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        flow_id = client.create_flow_from_name(f"{pool}-flow")
        deployment = client.create_deployment(flow_id=flow_id, name=pool, work_pool_name=pool)
        made = []
        for expected, duration in runs:
            when = epoch + timedelta(seconds=expected)
            run = client.create_flow_run_from_deployment(deployment, state=Scheduled(scheduled_time=when))
            made.append(Run(str(run.id), expected, duration))
        return made


def simulate(
    server: Server, pool: str, runs: list[Run], epoch: datetime, scaled: tuple[int, int] | None, lead_minutes: int = 3
) -> dict[str, Any]:
    """One day; `scaled` is (minWorkers, maxWorkers), None for one always-on worker."""
    from prefect.states import Completed, Running

    rest = PrefectRest(server.url, {})
    by_id = {run.run_id: run for run in runs}
    settings = BacklogSettings(
        namespace="bench", work_pool=pool, pool_type="process", run_limit=LIMIT,
        min_workers=scaled[0] if scaled else 1, max_workers=scaled[1] if scaled else 1,
        lead=timedelta(minutes=lead_minutes), quiet=timedelta(minutes=10),
    )  # fmt: skip
    workers: list[Worker] = [] if scaled else [Worker(ready_at=0, launched_at=0, next_poll=0)]
    first = min(run.expected for run in runs)
    now = 0.0 if not scaled else max(0.0, first - 15 * 60)
    decisions = 0
    requests, metric_hours, publishing = 0, set(), False  # PutMetricData calls; (metric, clock hour) with data
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(server.url) as client:
        while now < 86400:
            alive = [w for w in workers if w.stopped_at is None]
            if now % 60 == 0 and scaled:
                backlog = read_backlog(rest, settings, epoch + timedelta(seconds=now))
                ends = [r.end for r in runs if r.end is not None]
                last_end = now - max(ends) if ends else None
                backlog = dataclasses.replace(backlog, last_end_seconds=last_end)
                wanted = policy_capacity(workers_wanted(backlog, settings), settings.max_workers)
                decisions += 1
                publishing = backlog.publish_now  # as controller/backlog.py's tick decides
                if publishing:
                    requests += 1
                    metric_hours |= {
                        (d["MetricName"], int(now // 3600)) for d in metric_data(backlog, wanted, pool, epoch)
                    }
                if wanted > len(alive):
                    for _ in range(wanted - len(alive)):
                        workers.append(Worker(ready_at=now + ALARM_SECONDS + TASK_START_SECONDS,
                                              launched_at=now + ALARM_SECONDS, next_poll=0))  # fmt: skip
                elif wanted < len(alive):
                    idle = [w for w in alive if not w.runs]
                    for worker in idle[: len(alive) - wanted]:
                        worker.stopped_at = now + ALARM_SECONDS
            for worker in workers:
                for run in [r for r in worker.runs if r.start is not None and r.start + r.duration <= now]:
                    run.end = run.start + run.duration
                    client.set_flow_run_state(run.run_id, Completed(), force=True)
                    worker.runs.remove(run)
                ready = worker.ready_at <= now and (worker.stopped_at is None or worker.stopped_at > now)
                if ready and now >= worker.next_poll and len(worker.runs) < LIMIT:
                    worker.next_poll = now + STEP
                    due = rest.request("POST", "/flow_runs/filter", {
                        "work_pools": {"name": {"any_": [pool]}},
                        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}, "next_scheduled_start_time": {
                            "before_": (epoch + timedelta(seconds=now + PREFETCH_SECONDS)).isoformat()}},
                        "sort": "NEXT_SCHEDULED_START_TIME_ASC", "limit": LIMIT - len(worker.runs),
                    })  # fmt: skip
                    for found in due:
                        run = by_id[found["id"]]
                        client.set_flow_run_state(run.run_id, Running(), force=True)
                        run.start = max(now, run.expected) + RUN_START_SECONDS
                        worker.runs.append(run)
            busy = any(w.runs for w in workers) or any(r.start is None for r in runs if r.expected <= now + 300)
            done = all(r.end is not None for r in runs) and not any(w.stopped_at is None for w in workers if scaled)
            if done and not publishing:  # the controller's tail after the last scale-in is counted too
                break
            if scaled and not busy and not [w for w in workers if w.stopped_at is None]:
                upcoming = [r.expected for r in runs if r.start is None]
                if not upcoming:
                    break
                now = max(now + STEP, math.floor((min(upcoming) - 600) / 60) * 60)
            else:
                now += STEP
    end_of_day = 86400.0
    minutes = sum(((w.stopped_at if w.stopped_at is not None else end_of_day) - w.launched_at) / 60 for w in workers)
    if not scaled:
        minutes = 24 * 60.0  # one task all day
    delays = [run.start - run.expected for run in runs if run.start is not None]
    return {
        "worker_minutes": minutes,
        "p50": statistics.median(delays),
        "max": max(delays),
        "started": len(delays),
        "decisions": decisions,
        "month": minutes / 60 * (TASK_HOUR + IPV4_HOUR) * MONTH_DAYS,
        "fargate_month": minutes / 60 * TASK_HOUR * MONTH_DAYS,
        "requests": requests,
        "metric_hours": len(metric_hours),
    }


def controller_tick_ms(server: Server, pool: str, epoch: datetime) -> float:
    rest = PrefectRest(server.url, {})
    settings = BacklogSettings(namespace="bench", work_pool=pool, pool_type="process", run_limit=LIMIT, min_workers=0,
                               max_workers=5, lead=timedelta(minutes=3), quiet=timedelta(minutes=10))  # fmt: skip
    samples = []
    for _ in range(10):
        started = time.perf_counter()
        workers_wanted(read_backlog(rest, settings, epoch), settings)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def worker_first_poll_seconds(server: Server, pool: str) -> float:
    """A real `prefect worker start` (the task's command, without the supervisor) until the pool turns READY."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=server.url, PREFECT_WORKER_QUERY_SECONDS=str(WORKER_QUERY_SECONDS))
    started = time.monotonic()
    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", "--install-policy", "never",
         "--no-create-pool-if-not-found"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        while server.api("GET", f"/work_pools/{pool}")["status"] != "READY":
            if time.monotonic() - started > 120:
                raise TimeoutError("the worker never polled")
            time.sleep(0.1)
        return time.monotonic() - started
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)


def nightly_stack(day: dict[str, Any]) -> list[tuple[str, float, float]]:
    """The nightly team's stack a month, (item, alarms on, alarms false): the simulated day's Fargate time and
    backlog metrics, and devtools/costs.py's fixed items for the program's resources under NIGHTLY_CONFIG."""
    per_metric_hour = costs.METRIC_MONTH / costs.HOURS_PER_MONTH
    metrics = MONTH_DAYS * (day["metric_hours"] * per_metric_hour + day["requests"] * costs.PUT_METRIC_DATA_REQUEST)
    rows = [
        (f"worker task and its IPv4 address, {day['worker_minutes']:.0f} minutes a day", day["month"], day["month"]),
        (f"backlog metrics: {day['metric_hours']} metric-hours and {day['requests']} PutMetricData requests a day",
         metrics, metrics),
    ]  # fmt: skip

    def by_item(config: dict[str, str]) -> dict[str, tuple[str, float]]:
        """Each priced line by its item without a leading count: {item: (count or "", dollars)}."""
        priced = {}
        for line in costs.monthly_estimate(run_program(config)).lines:
            count, _, rest = line.item.partition(" ")
            priced[rest if count.isdigit() else line.item] = (count if count.isdigit() else "", line.dollars)
        return priced

    quiet = {k: v for k, v in NIGHTLY_CONFIG.items() if k != "alertEmail"} | {"alarms": "false"}  # no email without
    on, off = by_item(NIGHTLY_CONFIG), by_item(quiet)
    for item in [*on, *(i for i in off if i not in on)]:
        (n_on, d_on), (n_off, d_off) = on.get(item, ("0", 0.0)), off.get(item, ("0", 0.0))
        if d_on or d_off:  # the worker lines are $0 at minWorkers 0: the simulated day prices them above
            count = n_on if n_on == n_off else f"{n_on} (alarms on) / {n_off}"
            rows.append((f"{count} {item}".strip(), d_on, d_off))
    return rows


def main() -> None:
    server = nowhere()
    server.start()
    try:
        server.wait_healthy()
        midnight = (datetime.now(UTC) + timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
        rows = []
        cases = [
            ("nightly", None, 3), ("nightly", 2, 3), ("burst", None, 3), ("burst", 5, 3), ("burst", 25, 3),
            ("triggered burst", 25, 0),
        ]  # fmt: skip
        for name, max_workers, lead in cases:
            scaled = (0, max_workers) if max_workers else None
            pool = f"{name.replace(' ', '-')}-{max_workers or 'always-on'}"
            runs = create_runs(server, pool, midnight, schedule(name))
            result = simulate(server, pool, runs, midnight, scaled, lead)
            label = f"minWorkers 0, maxWorkers {max_workers}" if scaled else "one worker, always on"
            rows.append((name, f"{label} ({lead} min)" if scaled else label, result))
            print(f"  {name} / {label}: {result}", file=sys.stderr, flush=True)
        print("| schedule | workers (lead time) | worker-minutes a day | start delay p50 / max (s) | Fargate a month | "
              "with the task's IPv4 |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for name, label, r in rows:
            print(f"| {name} | {label} | {r['worker_minutes']:.0f} | {r['p50']:.0f} / {r['max']:.0f} | "
                  f"${r['fargate_month']:.2f} | ${r['month']:.2f} |")  # fmt: skip
        nightly = nightly_stack(next(r for name, label, r in rows if name == "nightly" and "maxWorkers 2" in label))
        print("\n| the nightly stack (minWorkers 0, maxWorkers 2), a month | alarms on | `alarms false` |")
        print("|---|---|---|")
        for item, on, off in nightly:
            print(f"| {item} | ${on:.2f} | ${off:.2f} |")
        print(f"| **total** | **${sum(r[1] for r in nightly):.2f}** | **${sum(r[2] for r in nightly):.2f}** |")
        tick = controller_tick_ms(server, "nightly-2", midnight)
        first_poll = worker_first_poll_seconds(server, "nightly-always-on")
        print()
        print("| scale from zero, measured here | seconds |")
        print("|---|---|")
        print(f"| one controller decision (six read calls to the local server), median of 10 | {tick / 1000:.3f} |")
        print(f"| `prefect worker start` to its first poll (pool READY) | {first_poll:.1f} |")
        print(f"\nsimulated: alarm and policy {ALARM_SECONDS} s, Fargate task start {TASK_START_SECONDS} s, "
              f"poll every {STEP} s, run start {RUN_START_SECONDS} s, --limit {LIMIT}")  # fmt: skip
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
