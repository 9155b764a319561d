"""The notify job's rules with fakes (no server, no AWS; controller/notify.py): which runs are published (this pool's,
ended FAILED or CRASHED, not one recovery will re-run), each ending once (the label, and the warm container's memory
when the label cannot be written), nothing on a partial listing, what the message says (names, state, the UI link
on Prefect Cloud and self-hosted, the log commands, no run data in the Subject, JSON for other protocols), the
credential masked everywhere, the pace and the deadline, and the request bodies it sends. The same against a real
server and moto's SNS: tests/test_controller_notify_runtime.py."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

import pytest
from test_controller_prefect_rest import API, KEY, FakeApi, Sent, client
from test_controller_recovery import NOW, OBSERVER_EXIT, FakePrefect, at, context, states

from controller import context as controller_context
from controller import handler, notify, recovery
from controller.context import Context, masked
from controller.prefect_rest import PAGE, PrefectError

TOPIC = "arn:aws:sns:us-east-1:123456789012:prefect-alerts-topic-1a2b3c4"
ENV = {
    "ALERT_TOPIC_ARN": TOPIC,
    "ALERT_PREFIX": "prefect-fargate-nightly",
    "WORKER_LOG_GROUP": "/prefect-fargate/nightly/prefect",
    "AWS_REGION": "eu-west-1",
}
CLOUD = "https://api.prefect.cloud/api/accounts/0ff44498-d6e4-4ac0-8ee6-2f5d4a2c8b3e/workspaces/9a7e1d3c-5b2f-4e8a-9c6d-1f0e2d3c4b5a"
FLOW_ID, DEPLOYMENT_ID = "f-1", "d-1"


def ended(
    n: int,
    state: str = "FAILED",
    message: str | None = "Flow run encountered an exception: ValueError: bad input",
    *,
    age: float = 120,
    pool: str | None = "fargate-pool",
    run_count: int = 1,
    retries: int | None = 0,
    labels: dict[str, str] | None = None,
    state_id: str | None = None,
) -> dict[str, Any]:
    """A run of the pool that ended `age` seconds ago, 5 minutes after it started."""
    return {
        "id": f"run-{n}",
        "name": f"crimson-falcon-{n}",
        "flow_id": FLOW_ID,
        "deployment_id": DEPLOYMENT_ID,
        "work_pool_name": pool,
        "state": {
            "id": state_id or f"state-{n}",
            "type": state,
            "name": state.title(),
            "timestamp": at(age),
            "message": message,
        },
        "start_time": at(age + 300),
        "end_time": at(age),
        "run_count": run_count,
        "empirical_policy": {"retries": retries},
        "labels": labels or {},
    }


class Prefect(FakePrefect):
    """Recovery's fake Prefect, plus what notify reads and writes: names, and the label (merged, as the server does)."""

    def __init__(self, runs: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(runs, **kwargs)
        self.labelled: list[tuple[str, dict[str, str]]] = []
        self.names_read: list[tuple[str, str]] = []

    def flow(self, flow_id: str) -> dict[str, Any]:
        self.names_read.append(("flow", flow_id))
        return {"id": flow_id, "name": "nightly-etl"}

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        self.names_read.append(("deployment", deployment_id))
        return {"id": deployment_id, "name": "nightly"}

    def set_labels(self, run_id: str, labels: dict[str, str]) -> None:
        self.labelled.append((run_id, labels))
        run = self.runs[run_id]
        self.runs[run_id] = {**run, "labels": {**(run.get("labels") or {}), **labels}}


class Sns:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, **request: Any) -> dict[str, str]:
        self.published.append(request)
        return {"MessageId": str(len(self.published))}

    def runs(self) -> list[str]:
        return [json.loads(json.loads(p["Message"])["default"])["flowRun"]["id"] for p in self.published]


class Clock:
    """A monotonic clock that only `sleep` moves."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture(autouse=True)
def cold_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a cold container: nothing published yet."""
    monkeypatch.setattr(notify, "_published", set())


def notify_context(
    prefect: Any,
    sns: Sns,
    *,
    env: dict[str, str] | None = None,
    lines: list[str] | None = None,
    api_url: str = CLOUD,
    credential: str | None = None,
    **setting: Any,
) -> Context:
    ctx = context(prefect, lines=lines, **setting)
    settings = type(ctx.settings)(**{**ctx.settings.__dict__, "api_url": api_url})
    return Context(
        **{
            **ctx.__dict__,
            "settings": settings,
            "sns": sns,
            "env": ENV if env is None else env,
            "credential": credential,
        }
    )


def minute(ctx: Context, clock: Clock | None = None) -> list[str]:
    clock = clock or Clock()
    return notify.run(ctx, sleep=clock.sleep, clock=lambda: clock.t)


def email(request: dict[str, Any]) -> str:
    return str(json.loads(request["Message"])["email"])


def structured(request: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.loads(request["Message"])["default"]))


# -- which runs, and each once ---------------------------------------------------------------------------------------


def test_each_ended_run_of_the_pool_is_published_once_and_labelled_with_its_state() -> None:
    runs = [ended(1), ended(2, "CRASHED", "Flow run infrastructure exited with non-zero status code 137.")]
    prefect, sns = Prefect([*runs, {**ended(3), "state": {**ended(3)["state"], "type": "COMPLETED"}}]), Sns()
    assert minute(notify_context(prefect, sns)) == ["run-1", "run-2"] == sns.runs()
    assert prefect.listed == [
        (["FAILED", "CRASHED"], {"end_time": {"after_": (NOW - timedelta(hours=24)).isoformat()}})
    ]
    assert sorted(prefect.labelled) == [
        ("run-1", {"prefect-fargate.notified": "state-1"}),
        ("run-2", {"prefect-fargate.notified": "state-2"}),
    ]
    assert prefect.changes == []  # a label is no state change
    for _ in range(3):  # the next minutes: every run labelled with the state it is in, nothing sent again
        minute(notify_context(prefect, Sns()))
    assert len(sns.published) == 2 and len(prefect.labelled) == 2
    assert notify.run(notify_context(prefect, sns), sleep=lambda _: None) == []


def test_the_oldest_ending_goes_first() -> None:
    prefect, sns = Prefect([ended(1, age=60), ended(2, age=600), ended(3, age=300)]), Sns()
    assert minute(notify_context(prefect, sns)) == ["run-2", "run-3", "run-1"] == sns.runs()


def test_a_run_that_ends_again_after_a_retry_is_published_again() -> None:
    prefect, sns = Prefect([ended(1)]), Sns()
    minute(notify_context(prefect, sns))
    prefect.runs["run-1"] = {**prefect.runs["run-1"], "state": {**ended(1)["state"], "id": "state-1-again"}}
    minute(notify_context(prefect, sns))
    assert sns.runs() == ["run-1", "run-1"]
    assert prefect.labelled[-1] == ("run-1", {"prefect-fargate.notified": "state-1-again"})


def test_only_this_pools_runs_are_listed_and_a_run_naming_another_pool_is_skipped() -> None:
    lines: list[str] = []
    prefect, sns = Prefect([ended(1), ended(2, pool="their-pool"), ended(3, pool=None)]), Sns()
    minute(notify_context(prefect, sns, lines=lines))  # the fake asserts the listing names fargate-pool
    assert sorted(sns.runs()) == ["run-1", "run-3"]  # no pool named: the listing's filter is the evidence
    assert "notify: listed but of another pool, skipped: run-2" in lines
    assert [run_id for run_id, _ in prefect.labelled] == ["run-1", "run-3"]


def test_without_the_alert_topic_the_job_is_off() -> None:
    prefect, sns = Prefect([ended(1)]), Sns()
    assert minute(notify_context(prefect, sns, env={})) == []
    assert prefect.listed == [] and sns.published == []


# -- runs recovery re-runs have not ended ------------------------------------------------------------------------------


def infrastructure_crash(n: int = 1, *, age: float = 60, run_count: int = 1, retries: int = 1) -> dict[str, Any]:
    return ended(n, "CRASHED", OBSERVER_EXIT, age=age, run_count=run_count, retries=retries)


def history_of(run: dict[str, Any]) -> list[dict[str, Any]]:
    history = states("SCHEDULED", "PENDING", "PENDING", "RUNNING", "CRASHED", end=60)
    history[-1]["id"] = run["state"]["id"]
    return history


@pytest.mark.parametrize(
    ("run", "retry_crashed", "published"),
    [
        (infrastructure_crash(), True, False),  # recovery re-runs it: attempt 2 of 2
        (infrastructure_crash(run_count=2), True, True),  # no retries left: ended
        (infrastructure_crash(), False, True),  # retryCrashedRuns false: ended
        (infrastructure_crash(age=11 * 60), True, True),  # past recovery's lookback: recovery never will
        (ended(1, "CRASHED", "Execution was aborted by an interrupt signal."), True, True),  # crashed by its flow
        (ended(1, "FAILED", OBSERVER_EXIT, retries=1), True, True),  # FAILED is final: Prefect retried it already
    ],
    ids=["rerun", "no-retries-left", "retry-off", "past-lookback", "flow-crash", "failed"],
)
def test_a_crash_recovery_will_rerun_has_not_ended(run: dict[str, Any], retry_crashed: bool, published: bool) -> None:
    prefect, sns = Prefect([run], histories={"run-1": history_of(run)}), Sns()
    lines: list[str] = []
    minute(notify_context(prefect, sns, lines=lines, retry_crashed=retry_crashed))
    assert sns.runs() == (["run-1"] if published else [])
    assert prefect.labelled == ([("run-1", {"prefect-fargate.notified": "state-1"})] if published else [])
    if not published:
        assert "notify: flow run run-1: crashed by infrastructure, recovery re-runs it; not ended" in lines


def test_notify_and_recovery_ask_the_same_predicate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever `recovery.rerun` answers decides both: recovery re-runs exactly the crash notify holds back."""
    asked: list[str] = []

    def rerun(ctx: Context, run: dict[str, Any], now: Any) -> recovery.Verdict | None:
        asked.append(run["id"])
        return recovery.verdict(run, "retry", "held back") if run["id"] == "run-1" else None

    monkeypatch.setattr(recovery, "rerun", rerun)
    runs = [infrastructure_crash(1), infrastructure_crash(2)]
    prefect, sns = Prefect(runs), Sns()
    minute(notify_context(prefect, sns))
    assert sns.runs() == ["run-2"] and sorted(asked) == ["run-1", "run-2"]
    recovery.run(context(prefect, "ecs"))  # the same stand-in: recovery re-runs run-1 alone
    assert [run_id for run_id, _ in prefect.changes] == ["run-1"]


def test_a_crash_left_by_a_recovery_out_of_time_is_not_published_and_is_once_it_ends() -> None:
    """Recovery had no time for the crash this minute; notify, later in the minute, still holds it back. Re-run next
    minute and crashed for good, it is published then."""
    run = infrastructure_crash()
    prefect, sns = Prefect([run], histories={"run-1": history_of(run)}), Sns()
    minute(notify_context(prefect, sns))
    assert sns.published == []
    recovery.run(context(prefect, "ecs"))
    assert prefect.runs["run-1"]["state"]["name"] == "AwaitingRetry"  # handed back: Scheduled, not listed
    minute(notify_context(prefect, sns))
    assert sns.published == []
    prefect.runs["run-1"] = infrastructure_crash(run_count=2) | {"state": {**run["state"], "id": "state-final"}}
    prefect.histories["run-1"] = history_of(prefect.runs["run-1"])
    minute(notify_context(prefect, sns))
    assert sns.runs() == ["run-1"]


# -- evidence: partial listings, moved runs, failures -----------------------------------------------------------


def test_a_failed_listing_page_publishes_nothing() -> None:
    """The real client: the second page of the listing fails, so no run is published or labelled."""
    failed = [ended(n) for n in range(PAGE + 5)]

    def route(sent: Sent) -> tuple[int, Any]:
        if sent.path == "/flow_runs/filter":
            return (503, {}) if sent.body["offset"] else (200, failed[:PAGE])
        raise AssertionError(f"nothing but the listing: {sent.method} {sent.path}")

    api, sns = FakeApi(route), Sns()
    with pytest.raises(PrefectError, match="503"):
        minute(notify_context(client(api), sns))
    assert sns.published == [] and [s.method for s in api.sent] == ["POST", "POST"]


def test_a_run_that_moved_on_or_was_labelled_meanwhile_is_left_alone() -> None:
    prefect, sns = Prefect([ended(1), ended(2)]), Sns()
    listed = [dict(run) for run in prefect.runs.values()]
    prefect.pool_runs = lambda *_, **__: listed  # type: ignore[method-assign]
    prefect.runs["run-1"] = {**listed[0], "state": {**listed[0]["state"], "id": "retried", "type": "RUNNING"}}
    prefect.runs["run-2"] = {**listed[1], "labels": {"prefect-fargate.notified": "state-2"}}  # another invocation
    assert minute(notify_context(prefect, sns)) == [] and sns.published == [] and prefect.labelled == []


def test_a_failed_publish_writes_no_label_fails_the_job_and_is_tried_next_minute() -> None:
    prefect, sns = Prefect([ended(1), ended(2, age=60)]), Sns()
    real = sns.publish

    def publish(**request: Any) -> dict[str, str]:
        if "run-1" in request["Message"]:
            raise RuntimeError("An error occurred (KMSAccessDenied) when calling the Publish operation")
        return real(**request)

    sns.publish = publish  # type: ignore[method-assign]
    with pytest.raises(notify.NotifyError, match=r"run-1.*KMSAccessDenied"):
        minute(notify_context(prefect, sns))
    assert sns.runs() == ["run-2"] and [run_id for run_id, _ in prefect.labelled] == ["run-2"]
    sns.publish = real  # type: ignore[method-assign]
    minute(notify_context(prefect, sns))
    assert sns.runs() == ["run-2", "run-1"]


def test_a_label_that_cannot_be_written_repeats_the_notice_once_per_cold_container_not_every_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At least once: published, then labelled. The label write fails (a credential that may not write), so the job
    fails every minute (controller-errors), but this warm container publishes no duplicate; a cold one does, once."""
    prefect, sns = Prefect([ended(1)]), Sns()

    def refused(run_id: str, labels: dict[str, str]) -> None:
        prefect.labelled.append((run_id, labels))
        raise PrefectError("Prefect API PATCH /flow_runs/run-1/labels: HTTP 403 (credential not allowed)", 403)

    prefect.set_labels = refused  # type: ignore[method-assign]
    for _ in range(5):
        with pytest.raises(notify.NotifyError, match="403"):
            minute(notify_context(prefect, sns))
    assert sns.runs() == ["run-1"] and len(prefect.labelled) == 5  # the label tried every minute, sent once
    monkeypatch.setattr(notify, "_published", set())  # a cold start
    with pytest.raises(notify.NotifyError):
        minute(notify_context(prefect, sns))
    assert sns.runs() == ["run-1", "run-1"]


def test_a_deleted_deployment_is_named_so_and_names_are_read_once_a_minute() -> None:
    prefect, sns = Prefect([ended(1), ended(2), ended(3)]), Sns()

    def deployment(deployment_id: str) -> dict[str, Any]:
        prefect.names_read.append(("deployment", deployment_id))
        raise PrefectError(f"Prefect API GET /deployments/{deployment_id}: HTTP 404 (Not Found)", 404)

    prefect.deployment = deployment  # type: ignore[method-assign]
    minute(notify_context(prefect, sns))
    assert len(sns.published) == 3 and "Deployment:  (deleted deployment d-1)" in email(sns.published[0])
    assert sorted(prefect.names_read) == [("deployment", "d-1"), ("flow", "f-1")]
    unreachable, sns = Prefect([ended(7)]), Sns()

    def flow(flow_id: str) -> dict[str, Any]:
        raise PrefectError(f"Prefect API GET /flows/{flow_id}: HTTP 503 (Service Unavailable)", 503)

    unreachable.flow = flow  # type: ignore[method-assign]
    with pytest.raises(notify.NotifyError, match="503"):
        minute(notify_context(unreachable, sns))
    assert sns.published == []


# -- the message ---------------------------------------------------------------------------------------------------


SELF_HOSTED = ["http://prefect.internal:4200/api", "https://prefect.example.com/api", "https://example.com/prefect/api"]


@pytest.mark.parametrize("api_url", [CLOUD, *SELF_HOSTED])
def test_the_run_link_is_the_one_prefect_itself_makes(api_url: str) -> None:
    """prefect.utilities.urls.url_for on a client whose PREFECT_API_URL is the stack's (Prefect derives the UI URL
    from it: settings/models/_defaults.py default_ui_url)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings
    from prefect.utilities.urls import url_for

    run_id = "8c1e5a4d-2b3c-4d5e-8f90-1a2b3c4d5e6f"
    with temporary_settings({PREFECT_API_URL: api_url}, restore_defaults={PREFECT_UI_URL}):
        expected = url_for("flow-run", obj_id=run_id)
    assert notify.run_url(api_url, run_id) == expected


def test_the_run_link_on_prefect_cloud_and_self_hosted() -> None:
    account, workspace = "0ff44498-d6e4-4ac0-8ee6-2f5d4a2c8b3e", "9a7e1d3c-5b2f-4e8a-9c6d-1f0e2d3c4b5a"
    assert notify.run_url(CLOUD, "r-1") == (
        f"https://app.prefect.cloud/account/{account}/workspace/{workspace}/runs/flow-run/r-1"
    )
    assert notify.run_url("http://prefect.internal:4200/api", "r-1") == "http://prefect.internal:4200/runs/flow-run/r-1"


def test_the_email_names_the_flow_deployment_run_state_and_says_where_to_look() -> None:
    prefect, sns = Prefect([ended(1)]), Sns()
    minute(notify_context(prefect, sns))
    (request,) = sns.published
    assert (request["TopicArn"], request["MessageStructure"]) == (TOPIC, "json")
    assert email(request).splitlines() == [
        "A flow run of work pool fargate-pool ended Failed.",
        "",
        "Flow:        nightly-etl",
        "Deployment:  nightly",
        "Flow run:    crimson-falcon-1 (run-1)",
        "State:       Failed at 2026-12-04 11:58:00 UTC (started 2026-12-04 11:53:00 UTC)",
        "Message:     Flow run encountered an exception: ValueError: bad input",
        "",
        f"Open it:     {notify.run_url(CLOUD, 'run-1')}",
        "Its logs:    prefect flow-run logs run-1",
        "",
        "Sent once by the prefect-fargate-nightly stack controller, which labels the run prefect-fargate.notified.",
    ]


def test_a_crashed_run_also_gets_the_worker_log_command() -> None:
    prefect, sns = (
        Prefect([ended(1, "CRASHED", "Flow run infrastructure exited with non-zero status code 137.")]),
        Sns(),
    )
    minute(notify_context(prefect, sns))
    # From a minute before the run started.
    command = "aws logs tail /prefect-fargate/nightly/prefect --since 2026-12-04T11:52:00Z --region eu-west-1"
    assert f"Worker log:  {command} (the worker's log: why the run crashed)" in email(sns.published[0]).splitlines()
    assert structured(sns.published[0])["logs"] == {"prefect": "prefect flow-run logs run-1", "worker": command}


def test_the_subject_carries_no_run_data() -> None:
    """SNS does not encrypt the Subject: the stack and pool only."""
    prefect, sns = Prefect([ended(1, message="secret customer 4711 failed")]), Sns()
    minute(notify_context(prefect, sns))
    subject = sns.published[0]["Subject"]
    assert subject == "prefect-fargate-nightly: a flow run of pool fargate-pool failed"
    for data in ("crimson-falcon", "nightly-etl", "run-1", "4711", "Failed"):
        assert data not in subject


def test_other_protocols_get_the_same_as_json() -> None:
    prefect, sns = Prefect([ended(1)]), Sns()
    minute(notify_context(prefect, sns))
    run = ended(1)
    assert structured(sns.published[0]) == {
        "source": "prefect-fargate",
        "stack": "prefect-fargate-nightly",
        "workPool": "fargate-pool",
        "flowRun": {
            "id": "run-1",
            "name": "crimson-falcon-1",
            "url": notify.run_url(CLOUD, "run-1"),
            "startTime": run["start_time"],
            "endTime": run["end_time"],
        },
        "flow": {"id": FLOW_ID, "name": "nightly-etl"},
        "deployment": {"id": DEPLOYMENT_ID, "name": "nightly"},
        "state": {
            "id": "state-1",
            "type": "FAILED",
            "name": "Failed",
            "message": "Flow run encountered an exception: ValueError: bad input",
            "timestamp": run["state"]["timestamp"],
        },
        "logs": {"prefect": "prefect flow-run logs run-1", "worker": None},
    }


def test_a_long_state_message_is_cut() -> None:
    prefect, sns = Prefect([ended(1, message="x" * 10_000)]), Sns()
    minute(notify_context(prefect, sns))
    message = structured(sns.published[0])["state"]["message"]
    assert message == "x" * notify.STATE_MESSAGE_MAX + "... (cut: the whole message is on the run's page)"
    assert len(sns.published[0]["Message"]) < 256 * 1024


@pytest.mark.parametrize("credential", [KEY, "admin:s3cret-Passw0rd"], ids=["api-key", "auth-string"])
def test_the_credential_is_masked_in_the_message_and_every_log_line(
    credential: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the handler, with the log as build_context makes it (every credential this container read, masked):
    a run whose state message and name quote the credential, and a label write whose error echoes it."""
    password = credential.split(":", 1)[-1]
    run = ended(1, message=f"401 for Bearer {credential} (and {password})")
    run["name"] = f"run-with-{password}"
    prefect, sns = Prefect([run]), Sns()

    def echoing(run_id: str, labels: dict[str, str]) -> None:
        raise PrefectError(f"an answer echoing {credential}")

    prefect.set_labels = echoing  # type: ignore[method-assign]
    monkeypatch.setattr(controller_context, "_seen", {credential})
    ctx = notify_context(prefect, sns, credential=credential)
    ctx = Context(**{**ctx.__dict__, "log": masked(handler.log)})
    monkeypatch.setattr(handler, "build_context", lambda *_, **__: ctx)
    with pytest.raises(handler.ControllerError, match="notify"):
        handler.run_jobs({}, {"notify": lambda c: notify.run(c, sleep=lambda _: None)})
    out = capsys.readouterr().out
    assert "notify: flow run run-1 ended" not in out and "job notify failed" in out and "***" in out
    assert "***" in email(sns.published[0])
    for text in (json.dumps(sns.published), out):
        assert credential not in text and password not in text, text


# -- pace and deadline ----------------------------------------------------------------------------------------------


def test_publishes_are_paced_for_an_email_endpoint() -> None:
    """SNS suspends an email subscription sent more than 10 messages a second."""
    clock, published_at = Clock(), []
    prefect, sns = Prefect([ended(n, age=60 + n) for n in range(12)]), Sns()
    real = sns.publish
    sns.publish = lambda **r: published_at.append(clock.t) or real(**r)  # type: ignore[method-assign]
    minute(notify_context(prefect, sns), clock)
    gaps = [b - a for a, b in itertools.pairwise(published_at)]
    assert len(published_at) == 12 and min(gaps) >= notify.PUBLISH_INTERVAL == 0.25
    assert max(len([t for t in published_at if s <= t < s + 1]) for s in published_at) == 4  # of SNS's 10


def test_it_stops_before_the_deadline_and_says_what_is_left() -> None:
    clock = [0.0]

    class Slow(Prefect):
        def flow_run(self, run_id: str) -> dict[str, Any]:
            clock[0] += 2
            return super().flow_run(run_id)

    prefect, sns, lines = Slow([ended(n, age=600 - n) for n in range(10)]), Sns(), []
    ctx = notify_context(prefect, sns, lines=lines)
    ctx = Context(**{**ctx.__dict__, "time_left": lambda: 7 - clock[0]})
    minute(ctx)
    assert sns.runs() == ["run-0", "run-1", "run-2"]
    (left,) = [line for line in lines if "out of time" in line]
    assert left.startswith("notify: out of time, 7 left for the next minute: run-3, run-4")


# -- what it sends Prefect ------------------------------------------------------------------------------------------


def test_the_requests_it_sends_prefect() -> None:
    """Through the real client: the listing (pool filter, state types, end time, every page at the page size), the
    run read again, the names, and the label PATCH with its body; nothing else, and no set_state."""
    runs = {f"run-{n}": ended(n) for n in range(PAGE + 1)}

    def route(sent: Sent) -> tuple[int, Any]:
        path = sent.path
        if path == "/flow_runs/filter":
            return 200, list(runs.values())[sent.body["offset"] :][: sent.body["limit"]]
        if path.startswith("/flow_runs/") and path.endswith("/labels"):
            return 200, None  # 204 in Prefect: no body
        if path.startswith("/flow_runs/"):
            return 200, runs[path.split("/")[2]]
        return 200, {"name": "nightly-etl" if path.startswith("/flows/") else "nightly"}

    api, sns = FakeApi(route), Sns()
    assert len(minute(notify_context(client(api), sns))) == PAGE + 1 == len(sns.published)
    listings = [s.body for s in api.sent if s.path == "/flow_runs/filter"]
    assert listings == [
        {
            "work_pools": {"name": {"any_": ["fargate-pool"]}},
            "flow_runs": {
                "state": {"type": {"any_": ["FAILED", "CRASHED"]}},
                "end_time": {"after_": (NOW - timedelta(hours=24)).isoformat()},
            },
            "sort": "ID_DESC",
            "limit": PAGE,
            "offset": offset,
        }
        for offset in (0, PAGE)
    ]
    labels = [(s.method, s.path, s.body) for s in api.sent if s.path.endswith("/labels")]
    assert labels[0] == ("PATCH", "/flow_runs/run-0/labels", {"prefect-fargate.notified": "state-0"})
    assert len(labels) == PAGE + 1
    calls = {(s.method, s.path.split("/")[1]) for s in api.sent}
    assert calls == {("POST", "flow_runs"), ("GET", "flow_runs"), ("PATCH", "flow_runs"), ("GET", "flows"),
                     ("GET", "deployments")}  # fmt: skip
    assert not [s for s in api.sent if s.path.endswith("/set_state")]
    assert [s.path for s in api.sent].count("/flows/f-1") == 1  # names read once a minute
    assert {s.authorization for s in api.sent} == {f"Bearer {KEY}"} and all(s.url.startswith(API) for s in api.sent)
