"""The notify job: each of this pool's flow runs that ends FAILED or CRASHED, published once to the stack's alert
topic (the one alertEmail is subscribed to), with no Prefect block.

Which runs: this pool's, listed with the work-pool filter as recovery lists them (another pool's run, a local run
or `flow.serve()` is never selected; one whose `work_pool_name` names another pool is skipped), in a state of type
FAILED (TimedOut included) or CRASHED, that ended within LOOKBACK (`end_time`, which the server sets when a run
enters a final state: prefect/server/orchestration/global_policy.py `SetEndTime`). Every page is read, or nothing
is published that minute. A CRASHED run that recovery will re-run (`recovery.rerun`, the one predicate both jobs
ask: a crash by infrastructure within its lookback that the flow's retries or the hand-back cap allow) has not
ended, even when recovery had no time for it this minute; it is reported only if it ends for good. A run handed
back (AwaitingRetry) is Scheduled, so not listed; a FAILED run is final (Prefect turns a FAILED proposal with
retries left into AwaitingRetry: `RetryFailedFlows`, prefect/server/orchestration/core_policy.py).

Each ending once, with a stateless Lambda: after publishing, the run gets the label LABEL = the id of the state
reported (`PATCH /flow_runs/{id}/labels`, which merges labels and writes nothing else: prefect_rest.py
`set_labels`), and a run whose label names its current state is skipped. A run re-run and failed again has a new
state, so it is reported again. FlowRunFilter cannot filter on labels in Prefect 3.9.1 (prefect/server/schemas/
filters.py `FlowRunFilter`: id, name, tags, deployment_id, work_queue_name, state, flow_version, the times,
parent ids, idempotency_key, created_by), so the skip is made here and the listing is bounded by LOOKBACK: a
failure that ended more than LOOKBACK before the controller next runs whole (down or failing that long, which
controller-not-running or controller-errors reports) is not emailed.

At least once: the notice is published, then the label written. A label write that fails, or an invocation that
ends between the two, sends the notice again next minute (a duplicate, never a lost notice: the label first would
lose the notice to a failed publish). The warm container also remembers what it published (`_published`) and then
only writes the missing label, so a label write that keeps failing (a credential that may read but not write)
repeats a notice once per cold start, not every minute; the job fails meanwhile (controller-errors). Before
publishing, the run is read again: a run whose state moved on or that another invocation labelled is left alone.

The message (`notice`): the flow, deployment and run names, the state's name, time and message, a link to the run in
the UI (`run_url`) and the log commands; the Subject names the stack and pool only (SNS does not encrypt it:
alert_notifier/topic.py). Email subscribers get the text, every other protocol the JSON (`structured`). Each field
is masked of the credential, as every log line is. Publishes are paced PUBLISH_INTERVAL apart: SNS suspends an
email subscription sent more than 10 messages a second (SNS developer guide, "Email subscription setup and
management").

Environment (components/alerts.py `failed_run_notice_environment`; without ALERT_TOPIC_ARN, i.e. with alarms
false, the job is off): ALERT_TOPIC_ARN, ALERT_PREFIX (the stack's `prefect-fargate-<stack>`), WORKER_LOG_GROUP
(the worker's log group, an ecs pool's flow runs' too); AWS_REGION (Lambda's own).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from alert_notifier.topic import publish_request

from . import recovery
from .context import Context, each_in_time, mask
from .prefect_rest import PrefectError

LABEL = "prefect-fargate.notified"
ENDED = ["FAILED", "CRASHED"]
LOOKBACK = timedelta(hours=24)
PUBLISH_INTERVAL = 0.25  # seconds: at most 4 notices a second, well within SNS's 10 a second for an email endpoint
STATE_MESSAGE_MAX = 2000  # characters of the state's message in a notice (SNS takes 256 KiB)
# What Prefect's settings derive the UI from for Cloud (prefect/settings/models/cloud.py: the API URL's default,
# and `default_cloud_ui_url`, which makes https://api... https://app... without /api).
CLOUD_API_URL = "https://api.prefect.cloud/api"
CLOUD_UI_URL = "https://app.prefect.cloud"
# A flow run's page in the UI: prefect/utilities/urls.py UI_URL_FORMATS["flow-run"]; the UI's own route is
# `runs` / `flow-run/:flowRunId` (prefect/server/ui/assets/index-*.js, `workspace.runs.flow-run`).
RUN_PAGE = "runs/flow-run/{id}"

# (run id, state id) this warm container published: see the module's docstring.
_published: set[tuple[str, str]] = set()


class NotifyError(Exception):
    """Some notices could not be sent or recorded (each named); they are tried again next minute."""


@dataclass(frozen=True, kw_only=True)
class NoticeSettings:
    topic_arn: str
    alert_prefix: str  # prefect-fargate-<stack>, as the alarms' names start
    log_group: str  # the worker's log group
    region: str | None

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> NoticeSettings | None:
        """None when the stack has no alert topic (alarms false): the job is off."""
        if not env.get("ALERT_TOPIC_ARN"):
            return None
        return cls(
            topic_arn=env["ALERT_TOPIC_ARN"],
            alert_prefix=env["ALERT_PREFIX"],
            log_group=env["WORKER_LOG_GROUP"],
            region=env.get("AWS_REGION") or None,
        )


# -- the message --------------------------------------------------------------------------------------------------


def ui_url(api_url: str) -> str:
    """The UI's base URL for an API URL, by Prefect's own rule (prefect/settings/models/_defaults.py
    `default_ui_url`): Cloud's API host becomes its app host, the `/api` suffix goes, `/accounts/<a>/workspaces/<w>`
    becomes `/account/<a>/workspace/<w>`. A self-hosted server: the API URL without `/api`."""
    url = api_url.rstrip("/")
    if url.startswith(CLOUD_API_URL):
        url = url.replace(CLOUD_API_URL, CLOUD_UI_URL)
    url = url.removesuffix("/api").replace("/api/", "/")
    return url.replace("/accounts/", "/account/").replace("/workspaces/", "/workspace/")


def run_url(api_url: str, run_id: str) -> str:
    return f"{ui_url(api_url)}/{RUN_PAGE.format(id=run_id)}"


def utc(text: str | None) -> str | None:
    """`2026-12-10 02:03:41 UTC` for an ISO time (None stays None)."""
    return recovery.parse_time(text).strftime("%Y-%m-%d %H:%M:%S UTC") if text else None


def worker_log_command(settings: NoticeSettings, run: dict[str, Any]) -> str:
    """`aws logs tail` of the worker's log group from a minute before the run started (or ended)."""
    since = recovery.parse_time(run.get("start_time") or run.get("end_time") or run["state"]["timestamp"])
    start = (since - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    region = f" --region {settings.region}" if settings.region else ""
    return f"aws logs tail {settings.log_group} --since {start}{region}"


@dataclass(frozen=True, kw_only=True)
class Notice:
    subject: str
    text: str  # for email subscribers
    structured: dict[str, Any]  # for every other protocol


def notice(
    ctx: Context, settings: NoticeSettings, run: dict[str, Any], flow_name: str, deployment_name: str | None
) -> Notice:
    """What is published for one ended run; every field masked of the credential."""
    clean = lambda value: None if value is None else mask(str(value), [ctx.credential])  # noqa: E731
    state = run["state"]
    run_id, pool = str(run["id"]), ctx.settings.pool_name
    message = str(state.get("message") or "(no message)")
    if len(message) > STATE_MESSAGE_MAX:
        message = f"{message[:STATE_MESSAGE_MAX]}... (cut: the whole message is on the run's page)"
    link = run_url(ctx.settings.api_url, run_id)
    prefect_logs = f"prefect flow-run logs {run_id}"
    worker_logs = worker_log_command(settings, run) if state["type"] == "CRASHED" else None
    ended, started = utc(state.get("timestamp")), utc(run.get("start_time"))
    lines = [
        f"A flow run of work pool {pool} ended {clean(state.get('name'))}.",
        "",
        f"Flow:        {clean(flow_name)}",
        f"Deployment:  {clean(deployment_name) or '(none)'}",
        f"Flow run:    {clean(run.get('name'))} ({run_id})",
        f"State:       {clean(state.get('name'))} at {ended}" + (f" (started {started})" if started else ""),
        f"Message:     {clean(message)}",
        "",
        f"Open it:     {link}",
        f"Its logs:    {prefect_logs}",
        *([f"Worker log:  {worker_logs} (the worker's log: why the run crashed)"] if worker_logs else []),
        "",
        f"Sent once by the {settings.alert_prefix} stack controller, which labels the run {LABEL}.",
    ]
    structured = {
        "source": "prefect-fargate",
        "stack": settings.alert_prefix,
        "workPool": pool,
        "flowRun": {
            "id": run_id,
            "name": clean(run.get("name")),
            "url": link,
            "startTime": run.get("start_time"),
            "endTime": run.get("end_time"),
        },
        "flow": {"id": str(run.get("flow_id")), "name": clean(flow_name)},
        "deployment": {"id": str(run["deployment_id"]), "name": clean(deployment_name)}
        if run.get("deployment_id")
        else None,
        "state": {
            "id": str(state["id"]),
            "type": state["type"],
            "name": clean(state.get("name")),
            "message": clean(message),
            "timestamp": state.get("timestamp"),
        },
        "logs": {"prefect": prefect_logs, "worker": worker_logs},
    }
    subject = f"{settings.alert_prefix}: a flow run of pool {pool} failed"  # no run data: SNS leaves it in clear
    return Notice(subject=subject, text="\n".join(lines), structured=structured)


# -- the job ---------------------------------------------------------------------------------------------------


def notified(run: dict[str, Any]) -> bool:
    """Whether the run's label names its current state: this ending was published."""
    return str((run.get("labels") or {}).get(LABEL)) == str(run["state"]["id"])


class Names:
    """Flow and deployment names, each read once per invocation; a deleted deployment is named so."""

    def __init__(self, ctx: Context) -> None:
        self.prefect = ctx.prefect
        self.cache: dict[tuple[str, str], str] = {}

    def of(self, kind: str, object_id: str) -> str:
        if (kind, object_id) not in self.cache:
            read = self.prefect.flow if kind == "flow" else self.prefect.deployment
            try:
                self.cache[kind, object_id] = str(read(object_id)["name"])
            except PrefectError as exc:
                if exc.status != 404:
                    raise
                self.cache[kind, object_id] = f"(deleted {kind} {object_id})"
        return self.cache[kind, object_id]


def run(
    ctx: Context, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic
) -> list[str]:
    """Publish each of the pool's ended runs not yet published; returns the ids of the runs published."""
    settings = NoticeSettings.from_environ(ctx.env)
    if settings is None:
        return []
    now = ctx.now()
    pool = ctx.settings.pool_name
    listed = ctx.prefect.pool_runs(pool, ENDED, end_time={"after_": (now - LOOKBACK).isoformat()})
    foreign = [str(r["id"]) for r in listed if r.get("work_pool_name") not in (None, pool)]
    if foreign:
        ctx.log(f"notify: listed but of another pool, skipped: {', '.join(foreign)}")
    due = sorted(
        (r for r in listed if str(r["id"]) not in foreign and not notified(r)),
        key=lambda r: r.get("end_time") or r["state"]["timestamp"],
    )
    names = Names(ctx)
    last_publish = [-math.inf]

    def step(listed_run: dict[str, Any]) -> str | None:
        run_id = str(listed_run["id"])
        current = ctx.prefect.flow_run(run_id)
        if str(current["state"]["id"]) != str(listed_run["state"]["id"]) or notified(current):
            return None  # moved on (a retry, a second invocation): judged again next minute if it ended anew
        state_id = str(current["state"]["id"])
        done = "labelled (published earlier by this container)"
        if (run_id, state_id) not in _published:
            if recovery.rerun(ctx, current, now) is not None:
                ctx.log(f"notify: flow run {run_id}: crashed by infrastructure, recovery re-runs it; not ended")
                return None
            found = notice(
                ctx,
                settings,
                current,
                names.of("flow", str(current["flow_id"])),
                names.of("deployment", str(current["deployment_id"])) if current.get("deployment_id") else None,
            )
            sleep(max(0.0, last_publish[0] + PUBLISH_INTERVAL - clock()))
            ctx.sns.publish(**publish_request(settings.topic_arn, found.subject, found.text, found.structured))
            last_publish[0] = clock()
            _published.add((run_id, state_id))
            done = "published to the alert topic"
        ctx.prefect.set_labels(run_id, {LABEL: state_id})
        ctx.log(f"notify: flow run {run_id} ended {current['state'].get('name')}: {done}")
        return run_id

    published, failed, left = each_in_time(ctx, [(str(r["id"]), lambda r=r: step(r)) for r in due])
    ctx.log(
        f"notify: {len(listed)} failed or crashed in {LOOKBACK.total_seconds() / 3600:g} h; {len(published)} published"
    )
    if left:
        ctx.log(f"notify: out of time, {len(left)} left for the next minute: {', '.join(left)}")
    if failed:
        raise NotifyError("; ".join(failed))
    return published
