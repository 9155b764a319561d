"""Benchmarks of the worker the task definition declares, on the local harness; prints a Markdown table.

    python benchmarks/worker_bench.py [--quick]

Measures worker cold start (process start to a passing health check), trigger-to-RUNNING latency
(p50/p95) at Prefect's default polling and at the polling the task definition sets, throughput
through one worker at --limit 1, 4 and 16, and memory (idle worker RSS, peak RSS of one flow-run
process), from which it derives how many concurrent runs fit in each Fargate memory size.
Speed targets live here, never in tests. Everything runs on 127.0.0.1 (devtools/harness.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the program's components
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the harness
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent_image"))  # the worker's supervisor

import worker_supervisor

from components.agent_service import USABLE_MEMORY
from devtools.harness import Cluster, Process, descendants, local_cluster, rss_bytes, wait_for

MIB = 1024 * 1024
FARGATE_MEMORY_MIB = (512, 1024, 2048, 3072, 4096, 8192)
RUN_TIMEOUT = 900


class Rows(list[tuple[str, str]]):
    """The table's rows, each also printed as soon as it is measured (a long run shows progress)."""

    def append(self, row: tuple[str, str]) -> None:
        super().append(row)
        print(f"  {row[0]}: {row[1]}", file=sys.stderr, flush=True)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class RssSampler:
    """Samples the worker's process tree: the worker's own RSS (its supervisor included), each flow run's (all
    the processes carrying its id) and the whole tree's, each at its peak."""

    def __init__(self, worker: Process) -> None:
        self.worker = worker
        self.worker_peak = 0
        self.tree_peak = 0
        self.run_peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            supervisor, table = self.worker.pid, worker_supervisor.read_process_table()
            # the supervisor's own child: `prefect worker start`, leading a session of its own
            worker = next((p.pid for p in table.values() if p.ppid == supervisor and p.sid == p.pid), supervisor)
            split = worker_supervisor.split_processes(table, supervisor, worker, worker_supervisor.read_flow_run_id)
            runs = split.runs
            worker_pids = [supervisor, *split.worker]
            worker_rss = sum(rss_bytes(pid) for pid in worker_pids)
            self.worker_peak = max(self.worker_peak, worker_rss)
            total = worker_rss
            for run_id, pids in runs.items():
                run_rss = sum(rss_bytes(pid) for pid in pids)
                self.run_peaks[run_id] = max(self.run_peaks.get(run_id, 0), run_rss)
                total += run_rss
            self.tree_peak = max(self.tree_peak, total)
            time.sleep(0.1)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def healthy_worker(cluster: Cluster, limit: int | None = None, **env: str) -> tuple[Process, float]:
    """Start a worker as declared; return it and the seconds from process start to a passing health check."""
    start = time.monotonic()
    worker = cluster.start_worker(limit=limit, **env)
    assert worker.health_port is not None
    wait_for(lambda: cluster.probe_health(worker.health_port) == 0, 120, "worker healthy", interval=0.05)
    return worker, time.monotonic() - start


def running_latency(cluster: Cluster, deployment: UUID, samples: int, **env: str) -> list[float]:
    """Seconds from creating a run to seeing it RUNNING, one run at a time."""
    worker, _ = healthy_worker(cluster, **env)
    latencies = []
    try:
        for n in range(samples):
            time.sleep(1.7 * n % 5)  # spread the triggers over the polling cycle
            start = time.monotonic()
            run_id = cluster.trigger(deployment, {"n": n})

            def running(run_id: UUID = run_id) -> bool:
                state = cluster.flow_runs([run_id])[run_id].state
                return state is not None and (state.is_running() or state.is_final())

            wait_for(running, RUN_TIMEOUT, "run RUNNING", interval=0.1)
            latencies.append(time.monotonic() - start)
            cluster.wait_final([run_id], RUN_TIMEOUT)
    finally:
        worker.stop()
    return latencies


def throughput(cluster: Cluster, deployment: UUID, limit: int, runs: int) -> tuple[float, RssSampler]:
    """Flow runs per minute through one worker with `--limit`, from a queue already full of due runs."""
    ids = [cluster.trigger(deployment, {"n": n}) for n in range(runs)]
    worker, _ = healthy_worker(cluster, limit=limit)
    try:
        with RssSampler(worker) as sampler:
            start = time.monotonic()
            finished = cluster.wait_final(ids, RUN_TIMEOUT)
            elapsed = time.monotonic() - start
    finally:
        worker.stop()
    bad = [run.state for run in finished.values() if run.state.type.value != "COMPLETED"]
    for state in bad:
        print(f"  --limit {limit}: a run ended {state.type.value}: {state.message}", flush=True)
    return (runs - len(bad)) / elapsed * 60, sampler


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {system}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    quick = parser.parse_args().quick
    latency_samples = 4 if quick else 20
    runs_at = {1: 4, 4: 12, 16: 16} if quick else {1: 10, 4: 32, 16: 64}
    rows = Rows()

    with local_cluster() as cluster:
        tiny = cluster.add_deployment("runtime_flows.py:tiny", "bench-tiny")
        declared = cluster.container_env()

        starts = []
        idle = []
        for _ in range(3):
            worker, seconds = healthy_worker(cluster)
            time.sleep(5)
            idle.append(sum(rss_bytes(pid) for pid in [worker.pid, *descendants(worker.pid)]))
            worker.stop()
            starts.append(seconds)
        rows.append(("worker cold start, process start to healthy (median of 3)", f"{statistics.median(starts):.1f} s"))

        prefect_defaults = {"PREFECT_WORKER_QUERY_SECONDS": "10", "PREFECT_WORKER_PREFETCH_SECONDS": "10"}
        default_latency = running_latency(cluster, tiny, latency_samples, **prefect_defaults)
        rows.append(
            (
                "trigger to RUNNING, Prefect default polling (query 10 s, prefetch 10 s): p50 / p95",
                f"{percentile(default_latency, 50):.1f} s / {percentile(default_latency, 95):.1f} s",
            )
        )
        polling = ("PREFECT_WORKER_QUERY_SECONDS", "PREFECT_WORKER_PREFETCH_SECONDS")
        tuned = {k: v for k, v in declared.items() if k in polling}
        if tuned:
            tuned_latency = running_latency(cluster, tiny, latency_samples, **tuned)
            rows.append(
                (
                    f"trigger to RUNNING, task definition polling ({tuned}): p50 / p95",
                    f"{percentile(tuned_latency, 50):.1f} s / {percentile(tuned_latency, 95):.1f} s",
                )
            )
        else:
            rows.append(("trigger to RUNNING, task definition polling", "same as default (not tuned)"))

        samplers: dict[int, RssSampler] = {}
        for limit, runs in runs_at.items():
            per_minute, samplers[limit] = throughput(cluster, tiny, limit, runs)
            rows.append(
                (f"throughput, --limit {limit}, task definition polling ({runs} runs)", f"{per_minute:.0f} runs/min")
            )

    idle_worker = statistics.median(idle)
    run_peak = max(max(s.run_peaks.values(), default=0) for s in samplers.values())
    worker_peak = max(s.worker_peak for s in samplers.values())
    for limit, sampler in samplers.items():
        rows.append((f"whole worker tree peak RSS at --limit {limit}", f"{sampler.tree_peak / MIB:.0f} MiB"))
    rows.append(("worker RSS idle (median of 3)", f"{idle_worker / MIB:.0f} MiB"))
    rows.append(("worker RSS peak while serving runs", f"{worker_peak / MIB:.0f} MiB"))
    rows.append(("peak RSS of one flow run, all its processes (trivial flow, S3 pull)", f"{run_peak / MIB:.0f} MiB"))
    for memory in FARGATE_MEMORY_MIB:
        fits = int((memory * USABLE_MEMORY * MIB - worker_peak) // run_peak)
        rows.append((f"concurrent runs that fit in {memory} MiB (90% usable)", str(max(fits, 0))))

    print(f"Machine: {machine()}\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    report: dict[str, Any] = {"idle_worker_mib": idle_worker / MIB, "run_peak_mib": run_peak / MIB}
    print(f"\n{report}")


if __name__ == "__main__":
    main()
