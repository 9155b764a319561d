"""agent_image/worker_supervisor.py with a stand-in worker (fast: no Prefect server).

The stand-in behaves as `prefect worker start` does where it matters here: it "polls" (appends to a
file every 0.1 s), starts each flow run as a child in a session of its own with PREFECT__FLOW_RUN_ID
in its environment, and ends its runs when it gets SIGTERM or SIGINT. The supervisor is stopped as
ECS stops a container (devtools/harness.py, `Process.ecs_stop`). Handing a run back to Prefect needs a
server: that part is proved end to end in test_runtime.py; here the API is unreachable on purpose.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devtools.harness import Process, describe_live, free_port, wait_for

SUPERVISOR = Path(__file__).resolve().parent.parent / "agent_image" / "worker_supervisor.py"
STOP_TIMEOUT = 8
HAND_BACK = 4  # generous: importing Prefect's client takes seconds on a loaded machine

STAND_IN_WORKER = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    from pathlib import Path

    out = Path(sys.argv[1])
    runs = []
    for name, run_id, seconds in (("short", sys.argv[2], 1), ("long", sys.argv[3], 600)):
        env = {**os.environ, "PREFECT__FLOW_RUN_ID": run_id}
        code = f"import time, pathlib; time.sleep({seconds}); pathlib.Path({str(out / name)!r}).write_text('done')"
        runs.append(subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True))

    def stop(signum, frame):  # what Prefect's ProcessManager does on shutdown: end the runs
        for run in runs:
            run.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        with (out / "polls").open("a") as polls:
            polls.write(".")
        time.sleep(0.1)
    """
)


SHORT_RUN, LONG_RUN = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Process]:
    """The supervisor running the stand-in worker, both runs started; the API is a closed port."""
    script = tmp_path / "worker.py"
    script.write_text(STAND_IN_WORKER)
    argv = [sys.executable, str(SUPERVISOR), "--stop-timeout", str(STOP_TIMEOUT), "--hand-back-seconds", str(HAND_BACK)]
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api", "PREFECT_HOME": str(tmp_path)}
    process = Process.start(
        "supervisor", [*argv, "--", sys.executable, str(script), str(tmp_path), SHORT_RUN, LONG_RUN], env, tmp_path
    )
    wait_for(lambda: len(process.tree()) == 3 and (tmp_path / "polls").exists(), 30, "worker and both runs started")
    yield process
    process.stop()


def _worker(supervised: Process) -> int:
    return next(pid for pid in supervised.tree() if "worker.py" in describe_live(pid))


def test_ecs_stop_freezes_the_worker_lets_a_short_run_finish_and_ends_a_long_one_before_the_deadline(
    supervised: Process, tmp_path: Path
) -> None:
    polls, worker = tmp_path / "polls", _worker(supervised)
    with ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(supervised.ecs_stop, STOP_TIMEOUT)
        wait_for(lambda: describe_live(worker).split()[1] == "T", 30, "the worker stopped (SIGSTOP)")
        frozen_at = polls.stat().st_size
        time.sleep(1)
        assert polls.stat().st_size == frozen_at, "the worker kept polling (claiming runs) after SIGTERM"
        stop = stopping.result()
    assert stop.exited_in_time, supervised.log()
    assert stop.seconds >= STOP_TIMEOUT - HAND_BACK, "the long run was not given until the hand-back time"
    assert not stop.processes_left, stop.processes_left
    assert (tmp_path / "short").read_text() == "done", "the worker's shutdown ended a run that could finish"
    assert not (tmp_path / "long").exists()
    log = supervised.log()
    assert f"could not hand back flow run {LONG_RUN}" in log, log  # the closed API port: tried, said so, went on


def test_a_worker_that_dies_takes_the_supervisor_down_with_its_code(supervised: Process) -> None:
    started = supervised.tree()
    os.kill(_worker(supervised), signal.SIGKILL)
    assert supervised.wait(timeout=30) == 128 + signal.SIGKILL
    assert not [describe_live(pid) for pid in started if describe_live(pid)], "the worker's runs outlived it"
