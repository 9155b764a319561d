"""The Lambda entry point (`controller.handler.handler`), run every minute by an EventBridge schedule.

Event: the schedule's (its content is not read). Environment: see controller/context.py.
Runs each job in turn; one job's failure does not stop the others. Every failure is logged on one line
with the credential masked, and the handler raises at the end so the Lambda `Errors` metric counts it
(the stack's controller-errors alarm watches that metric). A failure never acts on a run: a job that cannot
read what it needs leaves every run as it is until the next minute.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from . import backlog, recovery
from .context import Context, build_context

JOBS: dict[str, Callable[[Context], Any]] = {"recovery": recovery.run, "backlog": backlog.run}


class ControllerError(Exception):
    """One or more jobs failed this minute (each was logged)."""


def mask(text: str, secret: str | None) -> str:
    """`text` on one line, without the credential (nor, for an auth string, its password alone)."""
    line = " ".join(str(text).split())
    for part in {secret, *(secret or "").split(":", 1)[1:]} - {None, ""}:
        line = line.replace(str(part), "***")
    return line


def log(message: str) -> None:
    print(message, flush=True)  # the Lambda runtime sends stdout to the function's log group


def run_jobs(env: Mapping[str, str], jobs: Mapping[str, Callable[[Context], Any]] = JOBS, **context: Any) -> None:
    """Build the context and run each job; raise ControllerError naming the jobs that failed."""
    try:
        ctx = build_context(env, log, **context)
    except Exception as exc:  # Secrets Manager refused or throttled, or a setting is missing
        log(mask(f"controller: cannot start: {type(exc).__name__}: {exc}", None))
        raise ControllerError("setup") from None
    failed = []
    for name, job in jobs.items():
        try:
            job(ctx)
        except Exception as exc:  # Prefect unreachable, key rejected, AWS throttling beyond retries...
            ctx.log(mask(f"controller: job {name} failed: {type(exc).__name__}: {exc}", ctx.credential))
            failed.append(name)
    if failed:
        raise ControllerError(f"jobs failed: {', '.join(failed)}")


def handler(_event: Any, _context: Any) -> dict[str, str]:
    """Lambda's entry point; the schedule's event and the context carry nothing the jobs need."""
    run_jobs(os.environ)
    return {"status": "ok"}
