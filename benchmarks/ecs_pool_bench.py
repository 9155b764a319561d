"""AWS calls of an `ecs` pool at a team's scale (prefect#16485, #15865); prints a Markdown table.

    flock /work/wt/slow.lock python benchmarks/ecs_pool_bench.py [--deployments 100] [--runs 200]

prefect-aws's own ECS worker polls a real local Prefect server (devtools/harness.py) and submits every
run of the deployments (every tenth one asks for a bigger task); AWS is moto's, in this process.
Compares this stack's template (one family per task size, the latest revision matched) with the
same template under prefect-aws's own family handling (a family per deployment, no matching).
Counts RegisterTaskDefinition, DescribeTaskDefinition and RunTask calls, in total and per submitted
run (a run the local SQLite server refuses a write for under the burst crashes unsubmitted), and
then does it again with as many new deployments and runs (a restarted worker, families already there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the program's components
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the harness and the driver

from ecs_submissions import Submission, moto_pool_template, stock_family_handling, submit_through_pool

from devtools.harness import Cluster

BIG_EVERY = 10


def row(name: str, result: Submission) -> str:
    calls = result.calls
    return (
        f"| {name} | {result.deployments} | {result.runs} | {result.task_definitions} "
        f"| {calls['RegisterTaskDefinition']} ({result.per_run('RegisterTaskDefinition'):.2f}) "
        f"| {calls['DescribeTaskDefinition']} ({result.per_run('DescribeTaskDefinition'):.2f}) "
        f"| {calls['RunTask']} | {result.crashed} | {result.seconds:.0f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    from moto import mock_aws
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")  # noqa: S106 (moto)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    workdir = Path(tempfile.mkdtemp(prefix="prefect-ecs-bench-"))
    cluster = Cluster(workdir=workdir)
    try:
        cluster.start_server()
        with mock_aws():
            template = moto_pool_template()
            sizes = {"deployments": args.deployments, "runs": args.runs, "big_every": BIG_EVERY}
            ours = submit_through_pool(cluster.api_url, "bench-family-per-size", template, **sizes)
            more = submit_through_pool(cluster.api_url, "bench-family-per-size-more", template, **sizes)
            stock = submit_through_pool(cluster.api_url, "bench-stock", stock_family_handling(template), **sizes)
        # The worker's logs and events are sent in the background: send them while the server is up,
        # or their threads retry against a stopped server and the process never exits.
        for service in (APILogWorker, EventsWorker):
            service.drain_all(timeout=30)
    finally:
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        "| families | deployments | runs | distinct task definitions | RegisterTaskDefinition (per run) "
        "| DescribeTaskDefinition (per run) | RunTask (runs submitted) | not submitted (local SQLite busy) "
        "| submit time |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(row("one per task size, latest revision matched (this stack)", ours))
    print(row("the same, then as many new deployments and runs (restarted worker)", more))
    print(row("one per deployment (prefect-aws's default)", stock))


if __name__ == "__main__":
    main()
