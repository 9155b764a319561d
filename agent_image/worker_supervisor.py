"""Runs `prefect worker start` so that stopping the container loses no flow run.

    python worker_supervisor.py --stop-timeout 120 --hand-back-seconds 15 -- prefect worker start ...

Inputs: the arguments above (the container's `stopTimeout`, the seconds kept before it to hand runs
back, the worker's command), SIGTERM/SIGINT, /proc, and for the hand-back Prefect's client settings
from the environment (PREFECT_API_URL and the credential, the same the worker uses); in ECS, the
agent's ECS_AGENT_URI, through which the task is protected from scale-in while runs are in flight
(agent_image/task_protection.py), and ECS_CONTAINER_METADATA_URI_V4, from which the task's ARN becomes
the worker's name (`--name`, `/` written `:`), so that each run's `prefect.worker.name` label names the task
running it.

ECS stops a task with SIGTERM to the container's process group (the image's `tini -g`), then
SIGKILLs what is left after `stopTimeout`. `prefect worker start` answers SIGTERM by ending its
flow runs' processes and exiting within a second (`ProcessManager.__aexit__` in
prefect/runner/_process_manager.py), and those runs stay RUNNING for good. This program stands in
front of it, exec'd by the entrypoint with no shell, and instead:

- starts the worker in its own session, so the group SIGTERM reaches only this program, and adopts
  orphans (a child subreaper), so nothing the worker or a run starts escapes its watch;
- on SIGTERM (or SIGINT) freezes the worker's own processes with SIGSTOP, so it claims no new run.
  The worker's processes are told from the runs' by the process tree (`split_processes`): the
  worker and its descendants down to each flow-run process, which Prefect starts in a session of
  its own (`isolate_process_group` in prefect/runner/_workspace_starter.py) with the run's id in
  its environment (prefect/runner/_starter_engine.py). Everything below a flow-run process is that
  run's, whatever its environment (`env={}` children, unreadable environ, new sessions), and keeps
  running. A child the worker forked in the instant before it leaves the worker's session is still
  the worker's (it runs no flow code yet) and is frozen and ended with it; its run is still Pending
  and is left to the pool's recovery;
- drains the runs' output pipes, which the frozen worker no longer reads (a run that writes more
  than a pipe's 64 KiB would block), into this program's own stdout/stderr: the container's log;
- waits for the runs in flight until `--hand-back-seconds` before the deadline;
- ends each run still in flight, then proposes `AwaitingRetry` for it through Prefect's client (what
  `prefect flow-run execute` does for its reschedule intent, in prefect/cli/flow_run.py), so another
  worker of the pool runs it again from its start. The runs are handed back concurrently, with no
  client retries and every call bounded by the deadline; a run that could not be handed back is
  logged by id and left to the pool-scoped recovery. Then it kills the frozen worker and exits.

If the worker exits on its own, its runs still in flight are handed back the same way (within
`--hand-back-seconds`) and this program exits with the worker's code, so ECS replaces the task (the
health check keeps probing the worker itself). Only the standard library is imported until a run
must be handed back. The decisions are plain functions over a process table, a clock and a client,
so tests drive each rule with fakes (tests/test_worker_supervisor.py).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import selectors
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from uuid import UUID

from task_protection import DIRECT, TaskProtection  # agent_image/task_protection.py, next to this file in the image

FLOW_RUN_ID = b"PREFECT__FLOW_RUN_ID="
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
POLL_SECONDS = 0.2
KILL_WAIT_SECONDS = 5
# Kept between the end of the hand-back and stopTimeout, to kill the frozen worker and exit (a second was not
# always enough on a loaded 2-core machine).
EXIT_MARGIN_SECONDS = 2.0
# One API call's own timeout; the deadline bounds it further.
CALL_TIMEOUT_SECONDS = 5.0
# Runs handed back at once: a task at its --limit holds dozens; more at once only queues at the server.
HAND_BACK_CONCURRENCY = 16
# A call answered 408/429/502/503 or not answered is tried again after this pause, while the deadline allows.
RETRY_PAUSE_SECONDS = 0.5
RETRYABLE_STATUS = frozenset({408, 429, 502, 503})
AWAITING_RETRY, CANCELLED = "AwaitingRetry", "Cancelled"
HAND_BACK_MESSAGE = "The worker was stopped before this run finished; rescheduled for another worker."
# The ECS task metadata endpoint (version 4, Fargate platform 1.4.0+): `$ECS_CONTAINER_METADATA_URI_V4/task` answers
# the task's metadata, `TaskARN` among it ("Amazon ECS task metadata endpoint version 4 for tasks on Fargate").
METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"
METADATA_TIMEOUT_SECONDS = 3.0
DEAD = frozenset("ZX")  # zombie or dead: runs nothing


def log(message: str) -> None:
    print(f"worker-supervisor: {message}", file=sys.stderr, flush=True)


# -- Which task the worker is -------------------------------------------------------------------------------------


def own_task_arn(environ: Mapping[str, str] = os.environ) -> str | None:
    """This task's ARN from the ECS task metadata endpoint; None outside ECS (no endpoint) or when it does not
    answer (logged either way)."""
    endpoint = environ.get(METADATA_ENV)
    if not endpoint:
        log(f"no {METADATA_ENV} (not in ECS): the worker keeps Prefect's own name")
        return None
    try:
        with DIRECT.open(endpoint.rstrip("/") + "/task", timeout=METADATA_TIMEOUT_SECONDS) as response:
            arn = json.loads(response.read())["TaskARN"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log(f"the task metadata endpoint did not give the task ARN ({exc!r}): the worker keeps Prefect's own name")
        return None
    return str(arn)


def worker_name(task_arn: str) -> str:
    """The worker's name for its task: the task's ARN with each `/` written `:` (Prefect refuses a worker name with
    `/` or `%`, BaseWorker.__init__ in prefect/workers/base.py; ECS cluster names and task ids hold neither `:` nor
    `/`, so the controller reads the ARN back: controller/recovery.py, `worker_task`)."""
    return task_arn.replace("/", ":")


def named_after(command: list[str], task_arn: str | None) -> list[str]:
    """The worker's command, naming the worker after its ECS task (`prefect worker start --name`,
    prefect/cli/worker.py). The worker labels every run it submits with its name (`prefect.worker.name`,
    prefect/workers/base.py, `_give_worker_labels_to_flow_run`), which the stack controller reads to ask ECS
    whether the run's task still runs. A command that names its worker already is left as it is."""
    if task_arn is None or "--name" in command or "-n" in command:
        return command
    return [*command, "--name", worker_name(task_arn)]


# -- Which process is whose ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """One row of the process table."""

    pid: int
    ppid: int
    sid: int  # session id
    state: str  # /proc state letter: R, S, T, Z...


@dataclass(frozen=True)
class Processes:
    """Everything the supervisor watches, split by owner."""

    worker: list[int] = field(default_factory=list)  # the worker's own processes: frozen at a stop
    runs: dict[str, list[int]] = field(default_factory=dict)  # flow run id -> its flow-run process and all below
    unnamed: list[int] = field(default_factory=list)  # a run's processes whose run has no readable id
    tops: list[int] = field(default_factory=list)  # the topmost process of each run-side tree (its output pipes)

    @property
    def in_flight(self) -> bool:
        """Flow-run processes still live (where task scale-in protection would be set)."""
        return bool(self.runs or self.unnamed)

    def run_side(self) -> list[int]:
        return [pid for pids in self.runs.values() for pid in pids] + self.unnamed


def read_process_table() -> dict[int, Proc]:
    """Every process visible in /proc."""
    table = {}
    for path in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = path.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
            pid = int(path.parent.name)
            table[pid] = Proc(pid=pid, ppid=int(fields[1]), sid=int(fields[3]), state=fields[0])
    return table


def read_flow_run_id(pid: int) -> str | None:
    """The flow run id Prefect puts in a flow-run process's environment; None if absent or unreadable."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for item in environ.split(b"\0"):
        if item.startswith(FLOW_RUN_ID):
            return item[len(FLOW_RUN_ID) :].decode()
    return None


def split_processes(
    table: Mapping[int, Proc], supervisor_pid: int, worker_pid: int, flow_run_id: Callable[[int], str | None]
) -> Processes:
    """Split the live processes below the supervisor into the worker's and the runs'.

    A child of a worker process is a flow-run process if it left the worker's session (Prefect's
    `isolate_process_group`) or carries a flow run id (a pool whose `command` is set starts it in the
    worker's session); everything below it is that run's, and `flow_run_id` is read for it alone.
    Every other descendant of the worker is the worker's. An orphan adopted by the supervisor is the
    worker's if it is in the worker's session, else the run's whose session it is in (or whose id it
    carries: the worker may be gone), else a run's that has no name."""
    children: dict[int, list[int]] = {}
    for proc in table.values():
        if proc.state not in DEAD:
            children.setdefault(proc.ppid, []).append(proc.pid)
    worker_sid = table[worker_pid].sid if worker_pid in table else worker_pid
    found = Processes()
    run_of_session: dict[int, str | None] = {}

    def subtree(pid: int) -> list[int]:
        pids, todo = [pid], [pid]
        while todo:
            below = children.get(todo.pop(), [])
            pids += below
            todo += below
        return pids

    def add_run(top: int, run_id: str | None) -> None:
        found.tops.append(top)
        if run_id is None:
            found.unnamed.extend(subtree(top))
        else:
            found.runs.setdefault(run_id, []).extend(subtree(top))

    def walk_worker(pid: int) -> None:
        found.worker.append(pid)
        for child in children.get(pid, []):
            run_id, sid = flow_run_id(child), table[child].sid
            if sid != worker_sid or run_id is not None:
                if sid != worker_sid:
                    run_of_session[sid] = run_id
                add_run(child, run_id)
            else:
                walk_worker(child)

    def session_run(sid: int) -> str | None:
        """The run whose flow-run process leads session `sid` (Prefect starts it with `start_new_session`)."""
        if sid not in run_of_session:
            run_of_session[sid] = flow_run_id(sid) if sid in table else None
        return run_of_session[sid]

    if worker_pid in table and table[worker_pid].state not in DEAD:
        walk_worker(worker_pid)
    for orphan in children.get(supervisor_pid, []):
        if orphan == worker_pid:
            continue
        sid = table[orphan].sid
        if sid == worker_sid:
            walk_worker(orphan)
        else:
            add_run(orphan, session_run(sid) or flow_run_id(orphan))
    return found


# -- When --------------------------------------------------------------------------------------------------------


def hand_back_starts(stop_at: float, stop_timeout: float, hand_back_seconds: float) -> float:
    """Until when the runs in flight may finish in place."""
    return stop_at + stop_timeout - hand_back_seconds


def exit_deadline(stop_at: float, stop_timeout: float) -> float:
    """When every hand-back call must be over: ECS SIGKILLs at stopTimeout."""
    return stop_at + stop_timeout - EXIT_MARGIN_SECONDS


def wait_for_runs(
    scan: Callable[[], Processes], until: float, clock: Callable[[], float], sleep: Callable[[float], None]
) -> Processes:
    """Scan until no run is in flight or `until` is reached; returns the last scan."""
    processes = scan()
    while processes.in_flight and clock() < until:
        sleep(POLL_SECONDS)
        processes = scan()
    return processes


# -- In which state -----------------------------------------------------------------------------------------------


def hand_back_state(state: Any) -> str | None:
    """The state a run still in flight at the hand-back is put in (a Prefect `State` or None), or None to leave
    it: a run that already ended is left as it is (a Crashed one is re-run), a Cancelling one is Cancelled
    (its processes are gone, so nothing else will), anything else goes back to AwaitingRetry (Scheduled)."""
    if state is not None and state.is_final() and not state.is_crashed():
        return None
    if state is not None and state.is_cancelling():
        return CANCELLED
    return AWAITING_RETRY


class FlowRunClient(Protocol):
    """What the hand-back needs of Prefect's async client."""

    async def read_flow_run(self, flow_run_id: UUID) -> Any: ...

    async def set_flow_run_state(self, flow_run_id: UUID, state: Any, force: bool = False) -> Any: ...


def _retryable(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    if response is not None:
        return getattr(response, "status_code", None) in RETRYABLE_STATUS
    return isinstance(exc, OSError) or type(exc).__module__.startswith(("httpx", "httpcore"))


async def _hand_back_one(
    client: FlowRunClient, run_id: str, new_state: Callable[[str], Any], until: float, clock: Callable[[], float]
) -> str:
    """One run: read its state, propose the hand-back state (forced: its processes are gone, so no engine reports
    a state after this one); calls answered 408/429/502/503 or not at all are tried again while time remains."""
    import asyncio  # here, not at the top: 11 MiB, needed only once runs are handed back

    while True:
        try:
            run = await asyncio.wait_for(client.read_flow_run(UUID(run_id)), max(0.0, until - clock()))
            decision = hand_back_state(run.state)
            if decision is None:
                return f"already ended {run.state.type.value}; left as it is"
            state = new_state(decision)
            remaining = max(0.0, until - clock())
            result = await asyncio.wait_for(client.set_flow_run_state(UUID(run_id), state, force=True), remaining)
            return f"handed back: {decision} ({getattr(result.status, 'value', result.status)})"
        except Exception as exc:
            if not (_retryable(exc) or isinstance(exc, TimeoutError)) or until - clock() < RETRY_PAUSE_SECONDS:
                raise
        await asyncio.sleep(RETRY_PAUSE_SECONDS)


async def hand_back_runs(
    client: FlowRunClient,
    run_ids: Iterable[str],
    new_state: Callable[[str], Any],
    until: float,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, str]:
    """Hand every run back at once (HAND_BACK_CONCURRENCY at a time), all done by `until` (a `clock` time).
    Returns run id -> what happened; the ones that failed start with "not handed back"."""
    import asyncio

    limit = asyncio.Semaphore(HAND_BACK_CONCURRENCY)

    async def one(run_id: str) -> str:
        try:
            async with limit:
                return await asyncio.wait_for(
                    _hand_back_one(client, run_id, new_state, until, clock), max(0.0, until - clock())
                )
        except Exception as exc:  # one failed run must not keep the others from being handed back
            reason = "no answer before the deadline" if isinstance(exc, TimeoutError) else repr(exc)
            return f"not handed back: {reason}"

    ids = list(run_ids)
    return dict(zip(ids, await asyncio.gather(*(one(run_id) for run_id in ids)), strict=True))


def prefect_hand_back(run_ids: list[str], until: float) -> dict[str, str]:
    """`hand_back_runs` with Prefect's own client: its retries off and its timeouts short (PrefectHttpxAsyncClient
    retries 408/429/502/503 up to PREFECT_CLIENT_MAX_RETRIES times with backoff, prefect/client/base.py, and
    waits PREFECT_API_REQUEST_TIMEOUT, 60 s, per call, prefect/client/orchestration/__init__.py)."""
    import asyncio

    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
    from prefect.states import AwaitingRetry, Cancelled

    def new_state(decision: str) -> Any:
        return Cancelled() if decision == CANCELLED else AwaitingRetry(message=HAND_BACK_MESSAGE)

    async def run() -> dict[str, str]:
        timeout = {"timeout": httpx.Timeout(CALL_TIMEOUT_SECONDS)}
        async with get_client(httpx_settings=timeout) as client:
            return await hand_back_runs(client, run_ids, new_state, until)

    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
        return asyncio.run(run())


# -- The run's output while the worker is frozen ---------------------------------------------------------------


class PipeDrain:
    """Reads the pipes the runs write their output to (stdout and stderr of each run-side top process), which
    the frozen worker reads no more, and writes it to this program's own stdout and stderr, whole lines at once.
    Bytes the worker had read but not yet written when it was frozen are not repeated."""

    def __init__(self, tops: Iterable[int]) -> None:
        self._selector = selectors.DefaultSelector()
        self._partial: dict[int, bytes] = {}
        seen: set[tuple[int, int]] = set()
        for pid in tops:
            for fd, sink in ((1, sys.stdout.buffer), (2, sys.stderr.buffer)):
                path = f"/proc/{pid}/fd/{fd}"
                with contextlib.suppress(OSError):
                    info = os.stat(path)
                    if not stat.S_ISFIFO(info.st_mode) or (info.st_dev, info.st_ino) in seen:
                        continue  # /dev/null (stream_output off), a file, or a pipe already drained
                    seen.add((info.st_dev, info.st_ino))
                    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe opened through /proc: its read end
                    self._selector.register(reader, selectors.EVENT_READ, sink)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set() and self._selector.get_map():
            for key, _ in self._selector.select(POLL_SECONDS):
                self._forward(key.fd, key.data)

    def _forward(self, reader: int, sink: BinaryIO) -> None:
        try:
            chunk = os.read(reader, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        data = self._partial.pop(reader, b"") + chunk
        if not chunk:  # every writer is gone
            self._selector.unregister(reader)
            os.close(reader)
        elif not data.endswith(b"\n"):
            data, _, rest = data.rpartition(b"\n")
            self._partial[reader] = rest
            data += b"\n" if data else b""
        with contextlib.suppress(OSError, ValueError):
            sink.write(data)
            sink.flush()

    def stop(self) -> None:
        """Forward what is already in the pipes, then close them."""
        self._done.set()
        self._thread.join(timeout=2)
        while ready := self._selector.select(0):
            for key, _ in ready:
                self._forward(key.fd, key.data)
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fd)
            os.close(key.fd)


# -- The process side -----------------------------------------------------------------------------------------


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class Supervisor:
    """The worker process, its exit status, and the reaping of everything it leaves to us."""

    def __init__(self, command: list[str]) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            log(f"could not become a child subreaper (errno {ctypes.get_errno()}); orphaned runs go to PID 1")
        self.worker = subprocess.Popen(command, start_new_session=True)
        self.worker_code: int | None = None

    def scan(self) -> Processes:
        self.reap()
        return split_processes(read_process_table(), os.getpid(), self.worker.pid, read_flow_run_id)

    def reap(self) -> None:
        """Collect every exited child (ours, and orphans re-parented to us), noting the worker's status."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.worker.pid:
                self.worker_code = os.waitstatus_to_exitcode(status)

    def freeze_worker(self) -> Processes:
        """SIGSTOP the worker's own processes, so it claims no new run, until a scan finds none running (one it
        forked meanwhile is frozen in the next round); the runs' processes are never signalled."""
        frozen: set[int] = set()
        while True:
            processes = self.scan()
            todo = [pid for pid in processes.worker if pid not in frozen]
            if not todo:
                return processes
            _signal_all(todo, signal.SIGSTOP)
            frozen.update(todo)

    def end(self, pids: list[int], until: float) -> None:
        """SIGKILL `pids` and wait (until `until` at most) until they are gone, so no dying engine reports a
        state after ours."""
        _signal_all(pids, signal.SIGKILL)
        until = min(until, time.monotonic() + KILL_WAIT_SECONDS)
        while time.monotonic() < until:
            self.reap()
            table = read_process_table()
            if not any(pid in table and table[pid].state not in DEAD for pid in pids):
                return
            time.sleep(0.05)

    def hand_back(self, processes: Processes, until: float) -> None:
        """End every run still in flight and hand it back for another worker, all by `until`."""
        if not processes.in_flight:
            return
        self.end(processes.run_side(), until)
        if processes.unnamed:
            log(f"processes of a run with no readable flow run id ended: {processes.unnamed}")
        if not processes.runs:
            return
        try:
            results = prefect_hand_back(sorted(processes.runs), until)
        except Exception as exc:  # the client could not even start: every run is left to the recovery
            results = dict.fromkeys(processes.runs, f"not handed back: {exc!r}")
        for run_id, result in results.items():
            log(f"flow run {run_id} {result}")
        failed = sorted(run_id for run_id, result in results.items() if result.startswith("not handed back"))
        if failed:
            log(f"{len(failed)} flow run(s) not handed back, left to the pool's recovery: {', '.join(failed)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop-timeout", type=float, required=True, help="the container's stopTimeout, seconds")
    parser.add_argument("--hand-back-seconds", type=float, required=True, help="kept before the deadline to hand back")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- prefect worker start ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no worker command given after --")

    stopping: list[float] = []

    def on_stop(signum: int, _frame: object) -> None:
        if not stopping:
            stopping.append(time.monotonic())
            log(f"{signal.Signals(signum).name}: the worker takes no new run; waiting for its runs in flight")

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    supervisor = Supervisor(named_after(command, own_task_arn()))
    protection = TaskProtection.from_environ()  # None outside ECS
    while not stopping and supervisor.worker_code is None:
        supervisor.reap()
        if protection is not None:  # scale-in and deployments pass this task by while runs are in flight
            protection.update(lambda: supervisor.scan().in_flight)
        time.sleep(POLL_SECONDS)

    drain = None
    if stopping:
        processes = supervisor.freeze_worker()
        drain = PipeDrain(processes.tops)
        if processes.runs:
            import prefect.client.orchestration  # noqa: F401  (seconds of CPU: spent now, not at the hand-back)
        until = hand_back_starts(stopping[0], args.stop_timeout, args.hand_back_seconds)
        processes = wait_for_runs(supervisor.scan, until, time.monotonic, time.sleep)
        deadline = exit_deadline(stopping[0], args.stop_timeout)
    else:
        log(f"the worker exited with code {supervisor.worker_code}")
        processes = supervisor.scan()
        deadline = time.monotonic() + args.hand_back_seconds
    supervisor.hand_back(processes, deadline)
    supervisor.end(supervisor.scan().worker, deadline + EXIT_MARGIN_SECONDS / 2)
    if drain is not None:
        drain.stop()
    supervisor.reap()
    log("stopped")
    if stopping or not supervisor.worker_code:
        return 0
    return supervisor.worker_code if supervisor.worker_code > 0 else 128 - supervisor.worker_code  # as a shell does


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # at once: no interpreter teardown of Prefect's modules and threads eating into stopTimeout
