"""A worker killed outright mid-run (an out-of-memory kill, a lost host: SIGKILL to every process of
the task, no SIGTERM first) leaves a RUNNING run whose heartbeats stop; the stack's zombie
automation, made by its provider as `pulumi up` makes it, marks it CRASHED after 90 s.

About two and a half minutes (the automation's 90 s window is the point), so it has its own marker:
`python -m pytest -m long`, which `bash .ci/run` runs.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from prefect.client.schemas.objects import StateType

from devtools.harness import Cluster, local_cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.long]

RUN_TIMEOUT = 240  # generous: a run that never resolves fails the test instead of hanging it


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with local_cluster() as c:  # flows deployed, the stack's automations made through their provider
        yield c


def test_a_run_whose_worker_is_killed_outright_is_crashed_by_the_zombie_automation(cluster: Cluster) -> None:
    worker = cluster.start_worker()
    wait_for(lambda: cluster.probe_health(worker.health_port) == 0 or not worker.alive(), 120, "worker healthy")
    deployment = cluster.add_deployment("runtime_flows.py:sleep_for", "sleep-for-zombie")
    run_id = cluster.trigger(deployment, {"seconds": 600})
    beat = "prefect.flow-run.heartbeat"
    wait_for(lambda: beat in cluster.run_events(run_id), RUN_TIMEOUT, "the run's first heartbeat")
    assert cluster.flow_runs([run_id])[run_id].state.type == StateType.RUNNING

    task = [worker.pid, *worker.tree()]  # the flow run's processes too: some run in sessions of their own
    assert len(task) >= 2, task  # the worker and the flow run (a process of its own)
    worker.signal_group(signal.SIGKILL)
    worker.kill_leftovers()
    worker.wait(timeout=10)
    wait_for(lambda: not [pid for pid in task if _alive(pid)], 10, "every process of the task gone")

    try:
        run = cluster.wait_final([run_id], RUN_TIMEOUT)[run_id]
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; the run's events: {cluster.run_events(run_id)}") from None
    assert run.state.type == StateType.CRASHED, run.state
    assert run.state.message == "No heartbeat for 90 s: the worker running this flow run stopped or died."


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie process is dead, only not yet reaped
