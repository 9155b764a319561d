"""An ECS-style stop of a worker with --limit runs in flight, on the local harness; prints a Markdown table.

    python benchmarks/stop_bench.py [--stop-timeout SECONDS] [--limit N]
    python benchmarks/stop_bench.py --idle N    # N stops of an idle worker instead

The worker runs as the task definition declares it (its supervisor, command, environment and
--limit). Half of its runs cannot finish before the deadline and must be handed back and completed
by a replacement worker, started at the stop as a rolling deploy does. The other half are short
runs, which must complete in place: they wait until a second into the stop (so all are in flight at
the SIGTERM), then finish within seconds. They come in three kinds, in turn: a plain run, a run
whose child process has an empty environment (`env={}`, as dbt or a JVM launcher is started) and
runs through the stop, and a run that prints 1 MiB while the worker is frozen. The stop is ECS's:
SIGTERM to the process group, SIGKILL of whatever is left at stopTimeout (the declared 120 s unless
`--stop-timeout` says otherwise). Reports the time from SIGTERM to the old worker's exit and to the
last run COMPLETED, the runs lost or run twice, and how long a worker that has no run takes to stop.
With `--idle N`, stops N workers with no run in flight the same way and reports each one's SIGTERM to exit.
"""

from __future__ import annotations

import argparse
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the program's components
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # runtime_flows

from worker_bench import machine

from devtools.harness import local_cluster, server_only_cluster, wait_for

SHORT_RUN_CAP_SECONDS = 60  # a short run unreleased by then would be handed back: counted as run twice
LONG_RUN_SECONDS = 3600
RUN_TIMEOUT = 900
# kind -> (entrypoint in tests/runtime_flows.py, deployment name)
SHORT_KINDS = {
    "plain": ("runtime_flows.py:sleep_first_attempt", "bench-stop"),
    "env={} child": ("runtime_flows.py:env_less_child", "bench-stop-child"),
    "1 MiB output": ("runtime_flows.py:chatty", "bench-stop-chatty"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop-timeout", type=int, help="the deadline instead of the declared stopTimeout")
    parser.add_argument("--limit", type=int, help="runs in flight instead of the declared --limit")
    parser.add_argument("--idle", type=int, metavar="N", help="stop N idle workers instead, one after another")
    args = parser.parse_args()
    if args.idle:
        idle_stops(args.idle)
        return

    with local_cluster() as cluster:
        command = cluster.container["command"]
        limit = args.limit or int(command[command.index("--limit") + 1])
        deadline = args.stop_timeout or cluster.container["stopTimeout"]
        deployments = {kind: cluster.add_deployment(*where) for kind, where in SHORT_KINDS.items()}
        worker = cluster.start_worker(stop_timeout=args.stop_timeout, limit=limit)
        assert worker.health_port is not None
        wait_for(lambda: cluster.probe_health(worker.health_port) == 0 or not worker.alive(), 120, "worker healthy")
        assert worker.alive(), worker.log()[-3000:]
        release = cluster.workdir / "release-short-runs"
        short = {"seconds": SHORT_RUN_CAP_SECONDS, "release_file": str(release)}
        kinds = [list(SHORT_KINDS)[(n // 2) % len(SHORT_KINDS)] if n % 2 else "long" for n in range(limit)]
        ids = [
            cluster.trigger(deployments["plain"], {"seconds": LONG_RUN_SECONDS})
            if kind == "long"
            else cluster.trigger(deployments[kind], short)
            for kind in kinds
        ]
        cluster.wait_running(ids, RUN_TIMEOUT)
        replacement = cluster.start_worker()  # a rolling deploy starts the new task before stopping the old one
        sigterm = datetime.now(UTC)
        timer = threading.Timer(1.0, release.touch)
        timer.start()
        stop = worker.ecs_stop(deadline)
        timer.cancel()
        runs = cluster.wait_final(ids, RUN_TIMEOUT)
        replacement.stop()
        idle_worker = cluster.start_worker(stop_timeout=args.stop_timeout)  # has never had a run
        assert idle_worker.health_port is not None
        wait_for(lambda: cluster.probe_health(idle_worker.health_port) == 0, 120, "idle worker healthy")
        idle = idle_worker.ecs_stop(deadline)  # what a scale-in of an idle task waits
        print("\n".join(line for line in worker.log().splitlines() if "worker-supervisor" in line), file=sys.stderr)

    completed = [r for r in runs.values() if r.state.is_completed()]
    last = max((r.end_time for r in completed), default=sigterm)
    rows = [
        ("runs in flight at the stop (--limit)", f"{limit} ({kinds.count('long')} long, the rest short)"),
        ("stop deadline (stopTimeout)", f"{deadline} s"),
        (
            "SIGTERM to the old worker's exit",
            f"{stop.seconds:.1f} s ({'in time' if stop.exited_in_time else 'SIGKILLed'})",
        ),
        ("SIGTERM to the last run COMPLETED", f"{(last - sigterm).total_seconds():.1f} s"),
        ("idle worker: SIGTERM to exit", f"{idle.seconds:.1f} s ({'in time' if idle.exited_in_time else 'SIGKILLed'})"),
    ]
    for kind in ["long", *SHORT_KINDS]:
        mine = [runs[i] for i, k in zip(ids, kinds, strict=True) if k == kind]
        lost = sum(1 for r in mine if not r.state.is_completed())
        twice = sum(1 for r in mine if r.run_count > 1)
        label = "long runs (handed back, run again from the start)" if kind == "long" else f"short runs, {kind}"
        rows.append((label, f"{len(mine)}: {lost} lost, {twice} run twice"))
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
