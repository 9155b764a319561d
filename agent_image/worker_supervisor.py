"""Runs `prefect worker start` so that stopping the container loses no flow run.

    python worker_supervisor.py --stop-timeout 120 --hand-back-seconds 15 -- prefect worker start ...

ECS stops a task with SIGTERM to the container's process group (the image's `tini -g`), then
SIGKILLs what is left after `stopTimeout`. `prefect worker start` answers SIGTERM by ending its
flow runs' processes and exiting within a second (`ProcessManager.__aexit__` in
prefect/runner/_process_manager.py), and those runs stay RUNNING for good. This program stands in
front of it, exec'd by the entrypoint with no shell, and instead:

- starts the worker in its own session, so the group SIGTERM reaches only this program, and adopts
  the worker's orphans (a child subreaper), so nothing it starts escapes its watch;
- on SIGTERM (or SIGINT) freezes the worker with SIGSTOP: it takes no new run, while its flow-run
  processes, each in a session of its own (`isolate_process_group` in
  prefect/runner/_workspace_starter.py) and each carrying `PREFECT__FLOW_RUN_ID`
  (prefect/runner/_starter_engine.py), keep running and report their own final state;
- waits for them until `--hand-back-seconds` before the deadline;
- ends each run still in flight, then proposes `AwaitingRetry` for it through Prefect's client (what
  `prefect flow-run execute` does for its reschedule intent, in prefect/cli/flow_run.py), so another
  worker of the pool runs it again from its start; then kills the frozen worker and exits.

If the worker exits on its own, its runs still in flight are handed back the same way and this
program exits with the worker's code, so ECS replaces the task (the health check keeps probing the
worker itself). Only the standard library is imported until a run must be handed back.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

FLOW_RUN_ID = b"PREFECT__FLOW_RUN_ID="
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
POLL_SECONDS = 0.2
KILL_WAIT_SECONDS = 5


def log(message: str) -> None:
    print(f"worker-supervisor: {message}", file=sys.stderr, flush=True)


def _processes() -> dict[int, tuple[int, str]]:
    """PID -> (parent PID, state letter) for every process visible in /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            found[int(stat.parent.name)] = (int(fields[1]), fields[0])
    return found


def _descendants(root: int) -> list[int]:
    """Live (not zombie) descendants of `root`."""
    processes = _processes()
    tree: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes.items():
        tree.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in tree.get(todo.pop(), []):
            todo.append(child)
            if processes[child][1] != "Z":
                found.append(child)
    return found


def _flow_run_id(pid: int) -> str | None:
    """The flow run a process belongs to: Prefect puts its id in each flow-run process's environment."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for item in environ.split(b"\0"):
        if item.startswith(FLOW_RUN_ID):
            return item[len(FLOW_RUN_ID) :].decode()
    return None


def runs_in_flight(root: int) -> dict[str, list[int]]:
    """Flow run id -> the live processes running it, among `root`'s descendants."""
    runs: dict[str, list[int]] = {}
    for pid in _descendants(root):
        run_id = _flow_run_id(pid)
        if run_id is not None:
            runs.setdefault(run_id, []).append(pid)
    return runs


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
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

    def worker_processes(self) -> list[int]:
        """The worker and its helpers: every descendant that is not part of a flow run."""
        return [pid for pid in _descendants(os.getpid()) if _flow_run_id(pid) is None]

    def freeze_worker(self) -> None:
        """SIGSTOP the worker so it claims no new run; its flow runs keep going. A run's process caught
        between fork and exec is frozen too, so every flow-run process is continued."""
        _signal_all(self.worker_processes(), signal.SIGSTOP)
        _signal_all([pid for pids in runs_in_flight(os.getpid()).values() for pid in pids], signal.SIGCONT)

    def wait_for_runs(self, until: float) -> None:
        while runs_in_flight(os.getpid()) and time.monotonic() < until:
            self.reap()
            time.sleep(POLL_SECONDS)

    def end(self, pids: list[int]) -> None:
        """SIGKILL `pids` and wait (briefly) until they are gone, so no dying engine reports a state after ours."""
        _signal_all(pids, signal.SIGKILL)
        until = time.monotonic() + KILL_WAIT_SECONDS
        while set(pids) & set(_descendants(os.getpid())) and time.monotonic() < until:
            self.reap()
            time.sleep(0.05)

    def hand_back(self) -> None:
        """End every run still in flight and put it back to AwaitingRetry (a Scheduled state) for another worker."""
        runs = runs_in_flight(os.getpid())
        if not runs:
            return
        self.end([pid for pids in runs.values() for pid in pids])
        from prefect.client.orchestration import get_client
        from prefect.states import AwaitingRetry, Cancelled

        message = "The worker was stopped before this run finished; rescheduled for another worker."
        with get_client(sync_client=True) as client:
            for run_id in runs:
                try:
                    state = client.read_flow_run(UUID(run_id)).state
                    if state is not None and state.is_final() and not state.is_crashed():
                        log(f"flow run {run_id} already ended {state.type.value}; left as it is")
                        continue
                    # Forced: the run's processes are gone, so no engine reports a state after this one.
                    new = Cancelled() if state is not None and state.is_cancelling() else AwaitingRetry(message=message)
                    result = client.set_flow_run_state(UUID(run_id), new, force=True)
                    log(f"flow run {run_id} handed back: {new.name} ({result.status.value})")
                except Exception as exc:  # one failed run must not keep the others from being handed back
                    log(f"could not hand back flow run {run_id}: {exc!r}")


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
    supervisor = Supervisor(command)
    while not stopping and supervisor.worker_code is None:
        supervisor.reap()
        time.sleep(POLL_SECONDS)

    if stopping:
        supervisor.freeze_worker()
        if runs_in_flight(os.getpid()):
            import prefect.client.orchestration  # noqa: F401  (seconds of CPU: spent now, not at the hand-back)
        supervisor.wait_for_runs(until=stopping[0] + args.stop_timeout - args.hand_back_seconds)
    else:
        log(f"the worker exited with code {supervisor.worker_code}")
    supervisor.hand_back()
    supervisor.end(supervisor.worker_processes())
    supervisor.reap()
    log("stopped")
    if stopping or not supervisor.worker_code:
        return 0
    return supervisor.worker_code if supervisor.worker_code > 0 else 128 - supervisor.worker_code  # as a shell does


if __name__ == "__main__":
    sys.exit(main())
