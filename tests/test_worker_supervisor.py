"""agent_image/worker_supervisor.py: its decisions with fakes, then the program with a stand-in worker.

The first part drives each rule alone through the supervisor's plain functions: a fake process table,
a fake clock, and a fake Prefect client that records the states proposed; then Prefect's own client against
a fake API (httpx's MockTransport), for exactly what the hand-back sends.

The second part runs the program (no Prefect server) in front of a stand-in worker that behaves as
`prefect worker start` does where it matters here: it "polls" (appends to a file every 0.1 s),
starts each flow run as a child in a session of its own with PREFECT__FLOW_RUN_ID in its
environment, reads the runs' output through pipes (as Prefect's `consume_process_output` does), and
ends its runs when it gets SIGTERM or SIGINT. The supervisor is stopped as ECS stops a container
(devtools/harness.py, `Process.ecs_stop`). The API is a closed port or a stub; handing runs back to a
real server is proved in test_runtime.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.states import Cancelled, Cancelling, Completed, Crashed, Failed, Pending, Running

from devtools.harness import (
    Process,
    TaskMetadataStub,
    describe_live,
    free_port,
    serve_on_loopback,
    server_only_cluster,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
SUPERVISOR = ROOT / "agent_image" / "worker_supervisor.py"
sys.path.insert(0, str(SUPERVISOR.parent))
import worker_supervisor as ws  # noqa: E402  (ships alone in the image: not a package)

# -- How it tells the runs' processes from the worker's -------------------------------------------------------

SUPERVISOR_PID, CLI, WORKER, HELPER = 1, 10, 11, 12
RUN, RUN_CHILD, RUN_GRANDCHILD = 20, 21, 22
RUN_ID = "11111111-1111-1111-1111-111111111111"


def table(*rows: tuple[int, int, int] | tuple[int, int, int, str]) -> dict[int, ws.Proc]:
    """pid, parent pid, session id (and state letter, default S)."""
    return {row[0]: ws.Proc(pid=row[0], ppid=row[1], sid=row[2], state=row[3] if len(row) > 3 else "S") for row in rows}


@dataclass
class Environ:
    """A fake environ reader: the flow run ids it knows, and every pid it was asked about."""

    ids: dict[int, str]
    asked: list[int] = field(default_factory=list)

    def __call__(self, pid: int) -> str | None:
        self.asked.append(pid)
        return self.ids.get(pid)


# The supervisor; the CLI and its worker child in the worker's session (10) with a helper; a flow-run process in
# a session of its own (as Prefect starts it), its child started with env={} and a grandchild in a new session.
TREE = table(
    (SUPERVISOR_PID, 0, 1),
    (CLI, SUPERVISOR_PID, CLI),
    (WORKER, CLI, CLI),
    (HELPER, WORKER, CLI),
    (RUN, WORKER, RUN),
    (RUN_CHILD, RUN, RUN),
    (RUN_GRANDCHILD, RUN_CHILD, RUN_GRANDCHILD),
)


def test_everything_below_a_flow_run_process_is_the_runs_whatever_its_environment() -> None:
    environ = Environ({RUN: RUN_ID})
    found = ws.split_processes(TREE, SUPERVISOR_PID, CLI, environ)
    assert sorted(found.worker) == [CLI, WORKER, HELPER]
    assert {run: sorted(pids) for run, pids in found.runs.items()} == {RUN_ID: [RUN, RUN_CHILD, RUN_GRANDCHILD]}
    assert not found.unnamed
    assert found.tops == [RUN]
    assert not {RUN_CHILD, RUN_GRANDCHILD} & set(environ.asked), "a run's children were judged by their environ"


def test_a_process_that_left_the_workers_session_is_a_runs_even_with_no_readable_id() -> None:
    found = ws.split_processes(TREE, SUPERVISOR_PID, CLI, Environ({}))  # the flow-run process's environ unreadable
    assert sorted(found.worker) == [CLI, WORKER, HELPER]
    assert sorted(found.unnamed) == [RUN, RUN_CHILD, RUN_GRANDCHILD]
    assert found.in_flight


def test_a_flow_run_process_in_the_workers_session_is_named_by_its_id() -> None:
    """A pool whose `command` is set: Prefect starts the flow-run process without a session of its own."""
    same_session = {**TREE, RUN: ws.Proc(RUN, WORKER, CLI, "S"), RUN_CHILD: ws.Proc(RUN_CHILD, RUN, CLI, "S")}
    found = ws.split_processes(same_session, SUPERVISOR_PID, CLI, Environ({RUN: RUN_ID}))
    assert sorted(found.worker) == [CLI, WORKER, HELPER]
    assert sorted(found.runs[RUN_ID]) == [RUN, RUN_CHILD, RUN_GRANDCHILD]


def test_a_child_the_worker_forked_before_it_left_the_workers_session_is_the_workers() -> None:
    """Between fork and setsid the child has the worker's session and environment: it runs no flow code yet."""
    forking = {**TREE, 23: ws.Proc(23, WORKER, CLI, "S")}
    found = ws.split_processes(forking, SUPERVISOR_PID, CLI, Environ({RUN: RUN_ID}))
    assert 23 in found.worker


def test_orphans_follow_their_session_and_zombies_are_nobodys() -> None:
    orphans = {
        **TREE,
        30: ws.Proc(30, SUPERVISOR_PID, RUN, "S"),  # a run's daemon, re-parented to the subreaper
        31: ws.Proc(31, SUPERVISOR_PID, CLI, "S"),  # a worker helper's orphan
        32: ws.Proc(32, SUPERVISOR_PID, 40, "S"),  # in a session whose leader is gone, no id
        33: ws.Proc(33, WORKER, CLI, "Z"),
    }
    found = ws.split_processes(orphans, SUPERVISOR_PID, CLI, Environ({RUN: RUN_ID}))
    assert 30 in found.runs[RUN_ID]
    assert 31 in found.worker
    assert found.unnamed == [32]
    assert 33 not in found.worker + found.run_side()


def test_with_the_worker_gone_its_orphaned_runs_are_still_named() -> None:
    """The worker exited on its own: its flow-run processes are the supervisor's now."""
    gone = table((SUPERVISOR_PID, 0, 1), (RUN_CHILD, SUPERVISOR_PID, RUN), (RUN, SUPERVISOR_PID, RUN))
    found = ws.split_processes(gone, SUPERVISOR_PID, CLI, Environ({RUN: RUN_ID}))
    assert not found.worker
    assert sorted(found.runs[RUN_ID]) == [RUN, RUN_CHILD]


# -- When the hand-back starts ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_hand_back_starts_its_seconds_before_the_deadline_and_ends_before_it() -> None:
    assert ws.hand_back_starts(stop_at=1000.0, stop_timeout=120, hand_back_seconds=15) == 1105.0
    assert 1105.0 < ws.exit_deadline(stop_at=1000.0, stop_timeout=120) < 1120.0


def test_runs_in_flight_are_waited_for_until_the_hand_back_starts() -> None:
    clock, scans = FakeClock(), []
    in_flight = ws.Processes(runs={RUN_ID: [RUN]})

    def scan() -> ws.Processes:
        scans.append(clock())
        return in_flight

    assert ws.wait_for_runs(scan, until=1105.0, clock=clock, sleep=clock.sleep) is in_flight
    assert 1105.0 <= clock.now < 1105.0 + 2 * ws.POLL_SECONDS
    assert len(scans) > 100, "not scanned through the wait"


def test_when_the_runs_end_the_wait_ends_at_once() -> None:
    clock = FakeClock()
    idle = ws.Processes(worker=[CLI])
    scans = iter([ws.Processes(runs={RUN_ID: [RUN]})])
    done = ws.wait_for_runs(lambda: next(scans, idle), until=1105.0, clock=clock, sleep=clock.sleep)
    assert not done.in_flight
    assert clock.now == 1000.0 + ws.POLL_SECONDS


# -- In which state a run is handed back ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (Running(), ws.AWAITING_RETRY),
        (Pending(), ws.AWAITING_RETRY),
        (None, ws.AWAITING_RETRY),
        (Crashed(), ws.AWAITING_RETRY),  # a crash never re-runs in Prefect: hand it back
        (Cancelling(), ws.CANCELLED),
        (Completed(), None),
        (Failed(), None),
        (Cancelled(), None),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_the_state_a_run_is_handed_back_in(state: Any, expected: str | None) -> None:
    assert ws.hand_back_state(state) == expected


@dataclass
class FakeRun:
    state: Any


@dataclass
class Answer:
    status: str = "ACCEPT"


class FakeClient:
    """Prefect's client as the hand-back uses it: states by run id; records every state proposed; each call takes
    `delay` seconds; `failures` calls fail first with `error`."""

    def __init__(self, states: dict[str, Any], delay: float = 0.0, failures: int = 0, error: Exception | None = None):
        self.states, self.delay, self.failures, self.error = states, delay, failures, error
        self.proposed: list[tuple[str, str, bool]] = []
        self.calls = self.busy = self.most_at_once = 0

    async def _call(self) -> None:
        self.calls += 1
        self.busy += 1
        self.most_at_once = max(self.most_at_once, self.busy)
        try:
            await asyncio.sleep(self.delay)
            if self.failures:
                self.failures -= 1
                raise self.error or RuntimeError("fake failure")
        finally:
            self.busy -= 1

    async def read_flow_run(self, flow_run_id: UUID) -> FakeRun:
        await self._call()
        return FakeRun(self.states[str(flow_run_id)])

    async def set_flow_run_state(self, flow_run_id: UUID, state: Any, force: bool = False) -> Answer:
        await self._call()
        self.proposed.append((str(flow_run_id), state, force))
        return Answer()


def hand_back(client: FakeClient, seconds: float = 5.0) -> dict[str, str]:
    return asyncio.run(ws.hand_back_runs(client, list(client.states), str, time.monotonic() + seconds))


def ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def test_runs_in_flight_are_proposed_awaiting_retry_forced_and_a_cancelling_one_cancelled() -> None:
    running, cancelling = ids(2)
    client = FakeClient({running: Running(), cancelling: Cancelling()})
    results = hand_back(client)
    assert sorted(client.proposed) == sorted([(running, ws.AWAITING_RETRY, True), (cancelling, ws.CANCELLED, True)])
    assert all(result.startswith("handed back") for result in results.values()), results


def test_a_run_that_already_ended_is_left_as_it_is() -> None:
    (completed,) = ids(1)
    client = FakeClient({completed: Completed()})
    assert hand_back(client)[completed].startswith("already ended COMPLETED")
    assert client.proposed == []


def test_runs_are_handed_back_concurrently() -> None:
    client = FakeClient(dict.fromkeys(ids(40), Running()), delay=0.05)
    hand_back(client)
    assert len(client.proposed) == 40
    assert client.most_at_once == ws.HAND_BACK_CONCURRENCY


def test_an_api_that_hangs_is_given_up_on_at_the_deadline_and_each_run_named() -> None:
    client = FakeClient(dict.fromkeys(ids(3), Running()), delay=30)
    started = time.monotonic()
    results = hand_back(client, seconds=0.5)
    assert time.monotonic() - started < 1.5
    assert all(result.startswith("not handed back") for result in results.values()), results


def test_a_503_is_tried_again_while_time_remains_and_given_up_on_at_the_deadline() -> None:
    class Unavailable(Exception):
        response = Answer()
        response.status_code = 503  # type: ignore[attr-defined]

    (run,) = ids(1)
    flaky = FakeClient({run: Running()}, failures=1, error=Unavailable())
    assert hand_back(flaky)[run].startswith("handed back"), "one 503 lost the run"
    down = FakeClient({run: Running()}, failures=10**6, error=Unavailable())
    started = time.monotonic()
    assert hand_back(down, seconds=1.2)[run].startswith("not handed back")
    assert time.monotonic() - started < 1.7
    assert down.calls >= 2


# -- What reaches the API: the hand-back through Prefect's own client ------------------------------------------


@dataclass
class Sent:
    method: str
    path: str
    body: Any
    client_retries: int  # PREFECT_CLIENT_MAX_RETRIES while the request went out


def through_prefect(states: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, str], list[Sent]]:
    """`prefect_hand_back` with Prefect's real client, its HTTP answered by a fake API (httpx's MockTransport) that
    holds `states` by run id and accepts every proposal; returns what it reported and every request it sent."""
    import httpx
    import prefect.client.orchestration as orchestration
    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    sent: list[Sent] = []
    timeouts: list[Any] = []

    def api(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        sent.append(Sent(request.method, request.url.path, body, PREFECT_CLIENT_MAX_RETRIES.value()))
        run_id = request.url.path.split("/flow_runs/")[-1].split("/")[0]
        if request.method == "GET" and run_id in states:
            flow_run = FlowRun(id=UUID(run_id), flow_id=uuid.uuid4(), state=states[run_id])
            return httpx.Response(200, json=flow_run.model_dump(mode="json"))
        if request.url.path.endswith("/set_state"):
            return httpx.Response(201, json={"status": "ACCEPT", "details": {"type": "accept_details"},
                                             "state": body["state"]})  # fmt: skip
        return httpx.Response(404, json={"detail": "not here"})  # e.g. /csrf-token: no CSRF on this server

    real_get_client = orchestration.get_client

    def get_client(httpx_settings: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        timeouts.append((httpx_settings or {}).get("timeout"))
        return real_get_client(httpx_settings={**(httpx_settings or {}), "transport": httpx.MockTransport(api)},
                               **kwargs)  # fmt: skip

    monkeypatch.setattr(orchestration, "get_client", get_client)
    with temporary_settings({PREFECT_API_URL: "http://prefect.test/api"}):
        results = ws.prefect_hand_back(list(states), time.monotonic() + 10)
    assert timeouts == [httpx.Timeout(ws.CALL_TIMEOUT_SECONDS)]
    return results, sent


def test_the_hand_back_sends_awaiting_retry_due_now_or_cancelled_forced_with_client_retries_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Running, Pending, Crashed and stateless runs go back to AwaitingRetry (a SCHEDULED state due at once, so
    another worker's next poll takes it) with the hand-back message; a Cancelling run becomes Cancelled; each
    forced (no engine is left to report). A final run gets no request at all. Prefect's client retries nothing."""
    from datetime import UTC, datetime

    back = {name: str(uuid.UUID(int=i + 1)) for i, name in enumerate(["running", "pending", "crashed", "none"])}
    cancelling, completed, failed, cancelled = ids(8)[4:]
    states = {back["running"]: Running(), back["pending"]: Pending(), back["crashed"]: Crashed(),
              back["none"]: None, cancelling: Cancelling(), completed: Completed(), failed: Failed(),
              cancelled: Cancelled()}  # fmt: skip
    before = datetime.now(UTC)
    results, sent = through_prefect(states, monkeypatch)
    after = datetime.now(UTC)

    proposals = {s.path.split("/")[-2]: s.body for s in sent if s.path.endswith("/set_state")}
    assert set(proposals) == {*back.values(), cancelling}
    for run_id in back.values():
        body = proposals[run_id]
        state, details = body["state"], body["state"]["state_details"]
        assert (body["force"], state["type"], state["name"], state["message"]) == (
            True, "SCHEDULED", "AwaitingRetry", ws.HAND_BACK_MESSAGE
        )  # fmt: skip
        assert before <= datetime.fromisoformat(details["scheduled_time"]) <= after  # due now, not later
        assert details["flow_run_id"] == run_id and not details["pause_reschedule"]
    body = proposals[cancelling]
    assert (body["force"], body["state"]["type"], body["state"]["name"]) == (True, "CANCELLED", "Cancelled")
    assert {results[r] for r in (completed, failed, cancelled)} == {
        "already ended COMPLETED; left as it is", "already ended FAILED; left as it is",
        "already ended CANCELLED; left as it is",
    }  # fmt: skip
    assert {results[r] for r in back.values()} == {"handed back: AwaitingRetry (ACCEPT)"}
    assert results[cancelling] == "handed back: Cancelled (ACCEPT)"
    assert {s.client_retries for s in sent} == {0}


# -- Which task the worker is ----------------------------------------------------------------------------------

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/prefect-worker-cluster/0123456789abcdef0123456789abcdef"
WORKER_COMMAND = ["prefect", "worker", "start", "--pool", "fargate-pool", "--type", "process"]


def test_the_worker_is_named_after_the_task_the_metadata_endpoint_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stub = TaskMetadataStub(TASK_ARN)
    try:
        # Straight to the task's endpoint, never through a proxy the image may set (a dead one here).
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
        arn = ws.own_task_arn({ws.METADATA_ENV: stub.uri})
    finally:
        stub.close()
    assert arn == TASK_ARN
    # Prefect refuses `/` in a worker name (prefect/workers/base.py): the ARN's `/` are written `:`.
    assert ws.named_after(WORKER_COMMAND, arn) == [
        *WORKER_COMMAND,
        "--name",
        "arn:aws:ecs:us-east-1:123456789012:task:prefect-worker-cluster:0123456789abcdef0123456789abcdef",
    ]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("where", ["outside-ecs", "no-answer", "not-json"])
def test_without_a_task_arn_the_worker_keeps_prefects_own_name_and_says_why(
    where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    class NotJson(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = None
    if where == "outside-ecs":
        environ = {}
    elif where == "no-answer":
        environ = {ws.METADATA_ENV: f"http://127.0.0.1:{free_port()}/v4/x"}
    else:
        server, base = serve_on_loopback(NotJson)
        environ = {ws.METADATA_ENV: f"{base}/v4/x"}
    try:
        arn = ws.own_task_arn(environ)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    assert arn is None and ws.named_after(WORKER_COMMAND, arn) == WORKER_COMMAND
    assert "the worker keeps Prefect's own name" in capsys.readouterr().err


def test_the_name_is_one_prefect_accepts_for_a_worker_and_the_controller_reads_back_as_the_task() -> None:
    from prefect.workers.process import ProcessWorker

    from controller.recovery import worker_task

    name = ws.worker_name(TASK_ARN)
    assert ProcessWorker(work_pool_name="fargate-pool", name=name).name == name
    with pytest.raises(ValueError, match="cannot contain '/'"):
        ProcessWorker(work_pool_name="fargate-pool", name=TASK_ARN)
    cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/prefect-worker-cluster"
    assert worker_task({"labels": {"prefect.worker.name": name}}, cluster) == TASK_ARN


def test_a_command_that_names_its_worker_already_is_left_as_it_is() -> None:
    for named in ([*WORKER_COMMAND, "--name", "mine"], [*WORKER_COMMAND, "-n", "mine"]):
        assert ws.named_after(named, TASK_ARN) == named


# -- The program, with a stand-in worker ------------------------------------------------------------------------

STOP_TIMEOUT = 10
HAND_BACK = 5  # generous: importing Prefect's client takes seconds on a loaded machine
MIB = 1024 * 1024

STAND_IN_WORKER = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, threading, time
    from pathlib import Path

    out, runs_spec = Path(sys.argv[1]), json.loads(sys.argv[2])
    release = out / "release"
    runs = []
    for name, run_id, code in runs_spec:
        env = {**os.environ, "PREFECT__FLOW_RUN_ID": run_id, "OUT": str(out), "RELEASE": str(release)}
        run = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True, stdout=subprocess.PIPE)
        threading.Thread(target=lambda r=run: [sys.stdout.buffer.write(b) for b in r.stdout], daemon=True).start()
        runs.append(run)

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
WAIT = (
    "import os, pathlib, sys, subprocess, time\n"
    "while not pathlib.Path(os.environ['RELEASE']).exists(): time.sleep(0.05)\n"
)


def done(name: str) -> str:
    return f"pathlib.Path(os.environ['OUT'], {name!r}).write_text('done')\n"


# name -> flow run code: each short run waits for the test's release (given once the worker is frozen), then acts.
RUN_CODE = {
    "short": WAIT + done("short"),
    # A child with an explicit, empty environment (as dbt, JVM launchers and many CLIs are started), running at the
    # stop and released with the others.
    "child": "import os, pathlib, subprocess, sys\n"
    "wait = 'import pathlib, sys, time\\nwhile not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.05)'\n"
    "subprocess.run([sys.executable, '-c', wait, os.environ['RELEASE']], env={}, check=True)\n" + done("child"),
    # More output than a pipe holds, written while the worker is frozen.
    "chatty": WAIT
    + f"sys.stdout.writelines('x' * 1023 + '\\n' for _ in range({MIB // 1024}))\nsys.stdout.flush()\n"
    + done("chatty"),
    "long": "import time; time.sleep(600)\n",
}
RUN_IDS = {name: str(uuid.uuid4()) for name in RUN_CODE}


class StubApi:
    """A Prefect API stand-in on loopback that answers every request 503, or never answers."""

    def __init__(self, behaviour: str) -> None:
        hang = threading.Event()
        self.hang = hang
        self.requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                stub.requests += 1
                if behaviour == "hangs":
                    hang.wait(120)
                    return
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.hang.set()
        self._server.shutdown()
        self._server.server_close()


def start_supervised(
    tmp_path: Path, api_url: str, runs: dict[str, str], stop_timeout: float = STOP_TIMEOUT, hand_back: float = HAND_BACK
) -> Process:
    """The supervisor running the stand-in worker with `runs` (flow run id -> kind, a RUN_CODE key); returns once all
    runs are started."""
    script = tmp_path / "worker.py"
    script.write_text(STAND_IN_WORKER)
    spec = json.dumps([[name, run_id, RUN_CODE[name]] for run_id, name in runs.items()])
    argv = [sys.executable, str(SUPERVISOR), "--stop-timeout", str(stop_timeout), "--hand-back-seconds", str(hand_back)]
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(tmp_path)}
    worker = [sys.executable, str(script), str(tmp_path), spec]
    process = Process.start("supervisor", [*argv, "--", *worker], env, tmp_path)
    kinds = list(runs.values())
    processes = 1 + len(kinds) + kinds.count("child")  # the worker, its runs, the child run's child
    wait_for(lambda: len(process.tree()) == processes and (tmp_path / "polls").exists(), 60, "worker and runs started")
    return process


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Process]:
    """The supervisor and stand-in worker with every kind of run; the API is a closed port."""
    process = start_supervised(tmp_path, f"http://127.0.0.1:{free_port()}/api", {RUN_IDS[n]: n for n in RUN_CODE})
    yield process
    process.stop()


def _worker(supervised: Process) -> int:
    return next(pid for pid in supervised.tree() if "worker.py" in describe_live(pid))


@pytest.mark.slow  # a real supervisor and stand-in worker against wall-clock deadlines: not the fast set
def test_ecs_stop_freezes_only_the_worker_lets_short_runs_finish_and_ends_a_long_one_before_the_deadline(
    supervised: Process, tmp_path: Path
) -> None:
    polls, worker = tmp_path / "polls", _worker(supervised)
    with ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(supervised.ecs_stop, STOP_TIMEOUT)
        wait_for(lambda: describe_live(worker).split()[1] == "T", 30, "the worker stopped (SIGSTOP)")
        (tmp_path / "release").touch()
        frozen_at = polls.stat().st_size
        time.sleep(1)
        assert polls.stat().st_size == frozen_at, "the worker kept polling (claiming runs) after SIGTERM"
        stop = stopping.result()
    assert stop.exited_in_time, supervised.log()[-3000:]
    assert stop.seconds >= STOP_TIMEOUT - HAND_BACK, "the long run was not given until the hand-back time"
    assert not stop.processes_left, stop.processes_left
    assert (tmp_path / "short").read_text() == "done", "the worker's shutdown ended a run that could finish"
    assert (tmp_path / "child").exists(), "a run's child started with env={} was frozen with the worker"
    assert (tmp_path / "chatty").exists(), "a run writing 1 MiB blocked on the frozen worker's pipe"
    assert not (tmp_path / "long").exists()
    log = supervised.log()
    assert log.count("x" * 1023 + "\n") == MIB // 1024, "the chatty run's output did not reach the container's log"
    assert f"flow run {RUN_IDS['long']} not handed back" in log, log[-3000:]  # the closed API port: said so, went on
    assert f"left to the pool's recovery: {RUN_IDS['long']}" in log


@pytest.mark.slow  # a real supervisor and stand-in worker against wall-clock deadlines: not the fast set
@pytest.mark.parametrize("behaviour", ["answers 503", "hangs"])
def test_an_api_that_answers_503_or_hangs_still_lets_the_supervisor_exit_before_stop_timeout(
    tmp_path: Path, behaviour: str
) -> None:
    api = StubApi(behaviour)
    supervised = start_supervised(tmp_path, api.url, {RUN_IDS["long"]: "long"})
    try:
        stop = supervised.ecs_stop(STOP_TIMEOUT)
        log = supervised.log()
    finally:
        supervised.stop()
        api.close()
    assert api.requests, "the hand-back never reached the API"
    assert stop.exited_in_time, f"SIGKILLed at stopTimeout ({stop.seconds:.1f} s):\n{log[-3000:]}"
    assert f"flow run {RUN_IDS['long']} not handed back" in log, log[-3000:]


@pytest.mark.slow  # a real supervisor and stand-in worker against wall-clock deadlines: not the fast set
def test_a_worker_that_dies_takes_the_supervisor_down_with_its_code(supervised: Process) -> None:
    started = supervised.tree()
    os.kill(_worker(supervised), signal.SIGKILL)
    assert supervised.wait(timeout=30) == 128 + signal.SIGKILL
    assert not [describe_live(pid) for pid in started if describe_live(pid)], "the worker's runs outlived it"


@pytest.mark.slow
@pytest.mark.long  # its own server: in CI's `-m long` run, so the default run stays short
def test_ecs_stop_hands_40_runs_in_flight_back_to_a_real_server_inside_the_window(tmp_path: Path) -> None:
    """40 runs RUNNING in a real Prefect server, their processes (stand-ins carrying their ids) in flight at the stop:
    all are AwaitingRetry when the supervisor exits, before the deadline, with the declared hand-back time."""
    from prefect import flow
    from prefect.states import Running

    from components.agent_service import HAND_BACK_SECONDS

    @flow(name="in-flight")
    def in_flight() -> None:
        pass

    stop_timeout = HAND_BACK_SECONDS + 3  # the runs never end: the hand-back starts 3 s into the stop
    with server_only_cluster("supervisor-40-") as cluster, cluster.client() as client:
        run_ids = [str(client.create_flow_run(in_flight, state=Running()).id) for _ in range(40)]
        supervised = start_supervised(
            tmp_path, cluster.api_url, dict.fromkeys(run_ids, "long"), stop_timeout, HAND_BACK_SECONDS
        )
        try:
            stop = supervised.ecs_stop(stop_timeout)
        finally:
            supervised.stop()
        runs = cluster.flow_runs([UUID(run_id) for run_id in run_ids])
    log = supervised.log()
    assert stop.exited_in_time, f"SIGKILLed at stopTimeout:\n{log[-3000:]}"
    print(f"hand-back of 40 runs took {stop.seconds - 3:.1f} s of its {HAND_BACK_SECONDS} s")
    states = {run.state.name for run in runs.values()}
    assert states == {"AwaitingRetry"}, (states, log[-3000:])
    assert log.count("handed back: AwaitingRetry") == 40
