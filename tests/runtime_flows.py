"""Flows the runtime tests deploy next to `flows/` (same push to S3, same pull by the worker)."""

from __future__ import annotations

import time

import httpx
from prefect import flow

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


@flow(name="sleep-first-attempt")
def sleep_first_attempt(seconds: float = 600) -> int:
    """Sleeps on its first attempt only: a run interrupted there and put back completes on the next."""
    from prefect.runtime import flow_run

    if flow_run.run_count <= 1:
        time.sleep(seconds)
    return flow_run.run_count
