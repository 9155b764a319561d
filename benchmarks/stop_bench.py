"""An ECS-style stop of a worker with --limit runs in flight, on the local harness; prints a Markdown table.

    python benchmarks/stop_bench.py [--stop-timeout SECONDS]
    python benchmarks/stop_bench.py --idle N    # N stops of an idle worker instead

The worker runs as the task definition declares it (its supervisor, command, environment and
--limit). Half of its runs finish within seconds and must complete in place; the other half cannot
finish before the deadline and must be handed back and completed by a replacement worker, started
at the stop as a rolling deploy does. The stop is ECS's: SIGTERM to the process group, SIGKILL of
whatever is left at stopTimeout (the declared 120 s unless `--stop-timeout` says otherwise).
Reports the time from SIGTERM to the last run COMPLETED, the runs re-executed and the runs lost.
With `--idle N`, stops N workers with no run in flight the same way and reports each one's SIGTERM to exit.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the program's components
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the harness

from worker_bench import machine

from devtools.harness import local_cluster, server_only_cluster, wait_for

SHORT_RUN_SECONDS = 10
LONG_RUN_SECONDS = 3600
RUN_TIMEOUT = 900


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop-timeout", type=int, help="the deadline instead of the declared stopTimeout")
    parser.add_argument("--idle", type=int, metavar="N", help="stop N idle workers instead, one after another")
    args = parser.parse_args()
    if args.idle:
        idle_stops(args.idle)
        return
    stop_timeout = args.stop_timeout

    with local_cluster() as cluster:
        command = cluster.container["command"]
        limit = int(command[command.index("--limit") + 1])
        deadline = stop_timeout or cluster.container["stopTimeout"]
        deployment = cluster.add_deployment("runtime_flows.py:sleep_first_attempt", "bench-stop")
        worker = cluster.start_worker(stop_timeout=stop_timeout)
        assert worker.health_port is not None
        wait_for(lambda: cluster.probe_health(worker.health_port) == 0 or not worker.alive(), 120, "worker healthy")
        assert worker.alive(), worker.log()[-3000:]
        seconds = [SHORT_RUN_SECONDS if n % 2 else LONG_RUN_SECONDS for n in range(limit)]
        ids = [cluster.trigger(deployment, {"seconds": s}) for s in seconds]
        cluster.wait_running(ids, RUN_TIMEOUT)
        cluster.start_worker()  # the replacement: a rolling deploy starts it before stopping the old task
        sigterm = datetime.now(UTC)
        stop = worker.ecs_stop(deadline)
        runs = cluster.wait_final(ids, RUN_TIMEOUT)
        print("\n".join(line for line in worker.log().splitlines() if "worker-supervisor" in line), file=sys.stderr)

    completed = [r for r in runs.values() if r.state.is_completed()]
    last = max((r.end_time for r in completed), default=sigterm)
    short_rerun = sum(1 for i, s in zip(ids, seconds, strict=True) if s == SHORT_RUN_SECONDS and runs[i].run_count > 1)
    rows = [
        (
            "runs in flight at the stop (--limit)",
            f"{limit} ({limit - limit // 2} long, {limit // 2} of {SHORT_RUN_SECONDS} s)",
        ),
        ("stop deadline (stopTimeout)", f"{deadline} s"),
        (
            "SIGTERM to the old worker's exit",
            f"{stop.seconds:.1f} s ({'in time' if stop.exited_in_time else 'SIGKILLed'})",
        ),
        ("SIGTERM to the last run COMPLETED", f"{(last - sigterm).total_seconds():.1f} s"),
        (
            "runs re-executed (handed back, run again from the start)",
            str(sum(1 for r in runs.values() if r.run_count > 1)),
        ),
        ("short runs re-executed (should have finished in place)", str(short_rerun)),
        ("runs lost (not COMPLETED)", str(len(runs) - len(completed))),
    ]
    print(f"Machine: {machine()}\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def idle_stops(count: int) -> None:
    """SIGTERM to exit of `count` healthy workers with nothing to run, each stopped as ECS stops a task."""
    with server_only_cluster("stop-bench-idle-") as cluster:
        cluster.ensure_work_pool()
        seconds = []
        for _ in range(count):
            worker = cluster.start_worker()
            assert worker.health_port is not None
            wait_for(lambda w=worker: cluster.probe_health(w.health_port) == 0, 120, "worker healthy")
            seconds.append(worker.ecs_stop(cluster.container["stopTimeout"]).seconds)
    print(f"Machine: {machine()}\n")
    print("| measure | value |\n|---|---|")
    print(f"| idle worker, SIGTERM to exit ({count} stops) | {', '.join(f'{s:.1f} s' for s in seconds)} |")


if __name__ == "__main__":
    main()
