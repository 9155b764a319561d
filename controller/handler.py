"""The Lambda entry point (`controller.handler.handler`), run every minute by an EventBridge schedule.

Event: the schedule's (its content is not read). Lambda context: `get_remaining_time_in_millis()`, from which
each job gets its time left (`Context.time_left`, DEADLINE_MARGIN_SECONDS before the function's timeout): every
Prefect call's timeout is cut to it, and recovery stops before it (what it leaves is logged and done next minute).
Environment: see controller/context.py.

Runs the backlog job first, so that scaling never waits on recovery, then recovery, then the failed-run notices
(notify.py: after recovery, which may re-run a crashed run first); one job's failure does not stop the others.
Every failure is logged on one line with every credential form masked, and the handler raises at the end so the
Lambda `Errors` metric counts it (the stack's controller-errors alarm watches that metric). A failure never acts
on a run: a job that cannot read what it needs leaves every run as it is until the next minute.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from . import backlog, notify, recovery
from .context import Context, build_context, mask

JOBS: dict[str, Callable[[Context], Any]] = {"backlog": backlog.run, "recovery": recovery.run, "notify": notify.run}
# Kept between the jobs' deadline and the function's timeout: the last call's answer, the log lines, the raise.
DEADLINE_MARGIN_SECONDS = 5.0


class ControllerError(Exception):
    """One or more jobs failed this minute (each was logged)."""


def log(message: str) -> None:
    print(message, flush=True)  # the Lambda runtime sends stdout to the function's log group


def run_jobs(env: Mapping[str, str], jobs: Mapping[str, Callable[[Context], Any]] = JOBS, **context: Any) -> None:
    """Build the context and run each job; raise ControllerError naming the jobs that failed."""
    try:
        ctx = build_context(env, log, **context)
    except Exception as exc:  # Secrets Manager refused or throttled, or a setting is missing
        log(mask(f"controller: cannot start: {type(exc).__name__}: {exc}"))
        raise ControllerError("setup") from None
    failed = []
    for name, job in jobs.items():
        try:
            job(ctx)
        except Exception as exc:  # Prefect unreachable, key rejected, AWS throttling beyond retries...
            ctx.log(mask(f"controller: job {name} failed: {type(exc).__name__}: {exc}", [ctx.credential]))
            failed.append(name)
    if failed:
        raise ControllerError(f"jobs failed: {', '.join(failed)}")


def time_left_of(lambda_context: Any) -> Callable[[], float]:
    """Seconds before the jobs must stop: the function's remaining time less DEADLINE_MARGIN_SECONDS."""
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    if remaining is None:  # called outside Lambda (a test, a local run)
        return lambda: math.inf
    return lambda: remaining() / 1000 - DEADLINE_MARGIN_SECONDS


def handler(_event: Any, lambda_context: Any) -> dict[str, str]:
    """Lambda's entry point; the schedule's event carries nothing the jobs need."""
    run_jobs(os.environ, time_left=time_left_of(lambda_context))
    return {"status": "ok"}
