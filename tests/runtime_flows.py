"""Flows the runtime tests deploy next to `flows/` (same push to S3, same pull by the worker)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from tabulate import tabulate  # from flows/requirements.txt, not in Prefect's image: the worker's image bakes it in

FAILURE_MESSAGE = "deliberate failure from the runtime tests"


@flow(name="raise-error")
def raise_error() -> None:
    """Fails, so a test can see FAILED and the error in the run's logs."""
    raise ValueError(FAILURE_MESSAGE)


@flow(name="sleep-for")
def sleep_for(seconds: float = 600) -> float:
    """Stays RUNNING long enough to be caught by a worker stop."""
    time.sleep(seconds)
    return seconds


@flow(name="tiny")
def tiny(n: int = 0, sink_url: str | None = None) -> int:
    """The smallest batch job; posts `{"n": n}` to the sink so a test can count each run's execution."""
    if sink_url:
        httpx.post(sink_url, json={"n": n}, timeout=10).raise_for_status()
    return n


@flow(name="tabulate-report")
def tabulate_report(rows: list[list[str]]) -> str:
    """A flow with a package of its own (flows/requirements.txt): logs its rows as a table."""
    table = tabulate(rows, headers=["job", "status"])
    get_run_logger().info("report:\n%s", table)
    return table


@flow(name="sleep-first-attempt", log_prints=True)
def sleep_first_attempt(seconds: float = 600, release_file: str | None = None) -> int:
    """Sleeps on its first attempt only (until `release_file` exists, if given, for at most `seconds`), so a
    run handed back at a worker's stop completes on the next one; returns which attempt it was (Prefect's
    run count), as a flow that must tolerate a re-run can tell."""
    attempt = flow_run.run_count
    print(f"attempt {attempt}")
    if attempt == 1:
        _wait_for_release(seconds, release_file)
    return attempt


@flow(name="sleep-first-attempt-retries-1", retries=1, log_prints=True)
def sleep_first_attempt_retries_1(seconds: float = 600) -> int:
    """As sleep_first_attempt, with one retry: a run whose worker dies on attempt 1 is owed attempt 2."""
    return sleep_first_attempt.fn(seconds)


def _wait_for_release(seconds: float, release_file: str | None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (release_file and Path(release_file).exists()):
        time.sleep(0.2)


@flow(name="env-less-child")
def env_less_child(seconds: float = 600, release_file: str | None = None) -> int:
    """Runs a child process with an explicit, empty environment (as dbt, JVM launchers and many CLIs are started)
    that waits for `release_file` (at most `seconds`); returns the child's exit code."""
    wait = "import pathlib, sys, time\nwhile not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.2)"
    child = subprocess.run(
        [sys.executable, "-c", wait, release_file or "/nonexistent"], env={}, timeout=seconds, check=True
    )
    return child.returncode


@flow(name="chatty")
def chatty(output_bytes: int = 1024 * 1024, seconds: float = 600, release_file: str | None = None) -> int:
    """Once released, writes `output_bytes` to its stdout (more than a pipe holds), as a chatty tool does."""
    _wait_for_release(seconds, release_file)
    line = "x" * 1023 + "\n"
    sys.stdout.writelines(line for _ in range(output_bytes // len(line)))
    sys.stdout.flush()
    return output_bytes
