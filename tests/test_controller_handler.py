"""The controller's handler and context with fakes (controller/handler.py, context.py): the jobs' order and
deadline under a slow API, the credential read once per warm container and again after a rejection, and every
credential form masked out of every log line and exception."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from conftest import API_KEY as KEY
from conftest import controller_env, record_aws_calls
from test_controller_prefect_rest import Answer
from test_controller_recovery import NOW, settings

from controller import context as controller_context
from controller import handler
from controller.context import Context, build_context, mask

AUTH_STRING = "admin:s3cret-Passw0rd"
ENV = controller_env()


# -- the deadline, under a slow API ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0


class SlowApi:
    """A Prefect API where every call costs CALL_SECONDS of the fake clock (a call whose timeout is shorter times
    out, as urllib does), holding `stuck` runs Pending for an hour, never started."""

    CALL_SECONDS = 2.0

    def __init__(self, clock: Clock, stuck: int) -> None:
        self.clock = clock
        opened = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        self.runs = {
            f"run-{n:03}": {
                "id": f"run-{n:03}",
                "state": {"id": f"s-{n}", "type": "PENDING", "name": "Submitting", "timestamp": opened},
                "run_count": 0,
                "empirical_policy": {"retries": 0},
                "labels": {},
            }
            for n in range(stuck)
        }
        self.calls_past_deadline = 0
        self.deadline = 0.0

    def __call__(self, request: Any, timeout: float) -> Any:
        if self.clock.t >= self.deadline:
            self.calls_past_deadline += 1
        if timeout < self.CALL_SECONDS:
            self.clock.t += timeout
            raise urllib.error.URLError(TimeoutError("timed out"))
        self.clock.t += self.CALL_SECONDS
        return Answer(json.dumps(self.answer(request)).encode())

    def answer(self, request: Any) -> Any:
        path = urllib.parse.urlsplit(request.full_url).path.removeprefix("/api")
        body = json.loads(request.data) if request.data else {}
        types = (((body.get("flow_runs") or {}).get("state") or {}).get("type") or {}).get("any_")
        if path == "/flow_runs/count":
            return sum(run["state"]["type"] in (types or []) for run in self.runs.values())
        if path == "/flow_runs/filter":
            found = [run for run in self.runs.values() if types and run["state"]["type"] in types]
            return found[body.get("offset", 0) :][: body["limit"]]
        if path.startswith("/flow_run_states/"):
            return [{"id": "h", "type": "SCHEDULED", "timestamp": NOW.isoformat()}]
        if path.endswith("/set_state"):
            run = self.runs[path.split("/")[2]]
            run["state"] = {**body["state"], "id": "new", "timestamp": datetime.now(UTC).isoformat()}
            if body["state"]["type"] == "SCHEDULED":  # as the server does (SetNextScheduledStartTime)
                run["next_scheduled_start_time"] = body["state"]["state_details"]["scheduled_time"]
            return {"status": "ACCEPT"}
        if path.startswith("/flow_runs/"):
            return self.runs[path.split("/")[2]]
        raise AssertionError(f"unexpected {path}")


class FakeCloudWatch:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.published: list[float] = []

    def put_metric_data(self, **_: Any) -> None:
        self.published.append(self.clock.t)


class FakeEcs:
    def describe_tasks(self, **_: Any) -> dict[str, Any]:
        raise AssertionError("no run names a task")


class LambdaContext:
    def __init__(self, clock: Clock, timeout: float) -> None:
        self.clock, self.end = clock, clock.t + timeout

    def get_remaining_time_in_millis(self) -> int:
        return int((self.end - self.clock.t) * 1000)


def test_with_100_stuck_runs_and_a_2_s_api_scaling_publishes_every_minute_and_nothing_runs_past_the_deadline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    api = SlowApi(clock, stuck=100)
    cloudwatch = FakeCloudWatch(clock)
    monkeypatch.setattr("urllib.request.urlopen", lambda request, timeout: api(request, timeout))
    monkeypatch.setattr(boto3, "client", lambda service, **_: {"ecs": FakeEcs(), "cloudwatch": cloudwatch}[service])
    monkeypatch.setattr(handler.os, "environ", ENV)
    handed_back = []
    for minute in range(5):
        clock.t = minute * 60.0
        api.deadline = clock.t + 50 - handler.DEADLINE_MARGIN_SECONDS
        handler.handler({}, LambdaContext(clock, timeout=50))  # the function's timeout (stack_controller.py)
        assert clock.t <= api.deadline, f"minute {minute} ran to {clock.t - minute * 60:.0f} s"
        assert len(cloudwatch.published) == minute + 1, "the backlog published this minute"
        handed_back.append(sum(run["state"]["type"] == "SCHEDULED" for run in api.runs.values()))
    assert api.calls_past_deadline == 0
    gained = [b - a for a, b in zip([0, *handed_back], handed_back, strict=False)]
    assert min(gained) >= 3, gained  # recovery makes progress every minute (about 4 runs of 6 s each)
    assert "left for the next minute" in capsys.readouterr().out


def test_the_jobs_deadline_is_the_functions_remaining_time_less_the_margin() -> None:
    clock = Clock()
    left = handler.time_left_of(LambdaContext(clock, timeout=50))
    assert left() == 50 - handler.DEADLINE_MARGIN_SECONDS == 45
    clock.t = 44.5
    assert left() == 0.5
    assert handler.time_left_of(None)() == float("inf")


def test_the_backlog_runs_before_recovery_then_notify_and_a_failure_of_one_keeps_the_others(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[str] = []
    ctx = Context(settings=settings(), prefect=None, ecs=None, now=lambda: NOW, log=handler.log)  # type: ignore[arg-type]
    monkeypatch.setattr(handler, "build_context", lambda env, log, **_: ctx)

    def backlog(_: Context) -> None:
        ran.append("backlog")
        raise RuntimeError("CloudWatch throttled")

    monkeypatch.setattr(handler.backlog, "run", backlog)
    monkeypatch.setattr(handler.recovery, "run", lambda _: ran.append("recovery"))
    monkeypatch.setattr(handler.notify, "run", lambda _: ran.append("notify"))
    jobs = {name: getattr(handler, name).run for name in handler.JOBS}  # the same order, the stand-ins
    with pytest.raises(handler.ControllerError, match=r"jobs failed: backlog$"):
        handler.run_jobs({}, jobs)
    assert ran == ["backlog", "recovery", "notify"] == list(handler.JOBS)


# -- the credential: once per warm container ---------------------------------------------------------------------------


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controller_context, "_credentials", {})
    monkeypatch.setattr(controller_context, "_seen", set())


def test_the_credential_is_read_once_per_warm_container_and_again_once_after_a_401(
    aws_env: None, fresh_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="prefect-api-key", SecretString=KEY)["ARN"]
    env = {**ENV, "PREFECT_CREDENTIAL_SECRET_ARN": arn, "PREFECT_CREDENTIAL_ENV": "PREFECT_API_KEY"}
    calls = record_aws_calls(monkeypatch)
    gets = lambda: [op for _, op, _ in calls].count("GetSecretValue")  # noqa: E731
    for _ in range(60):  # an hour of warm invocations
        assert build_context(env, print).credential == KEY
    assert gets() == 1

    secrets.put_secret_value(SecretId=arn, SecretString="pnu_Rotated")
    sent: list[str] = []

    def api(request: Any, timeout: float) -> Any:
        sent.append(request.get_header("Authorization"))
        if request.get_header("Authorization") != "Bearer pnu_Rotated":
            raise urllib.error.HTTPError(request.full_url, 401, "Unauthorized", {}, None)  # type: ignore[arg-type]
        return Answer(b"[]")

    monkeypatch.setattr("urllib.request.urlopen", api)
    ctx = build_context(env, print)
    assert ctx.prefect.pool_runs("fargate-pool", ["RUNNING"]) == []
    assert sent == [f"Bearer {KEY}", "Bearer pnu_Rotated"]
    assert gets() == 2
    assert build_context(env, print).credential == "pnu_Rotated"  # the cache now holds the new one
    assert gets() == 2


# -- masking: every credential form, every line, every exception -----------------------------------------------------


@pytest.mark.parametrize(
    ("credential", "forms"),
    [(KEY, [KEY]), (AUTH_STRING, [AUTH_STRING, "s3cret-Passw0rd"])],
    ids=["api-key", "auth-string"],
)
def test_no_credential_form_reaches_a_log_line_or_an_exception(
    credential: str,
    forms: list[str],
    aws_env: None,
    fresh_cache: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="prefect-credential", SecretString=credential)["ARN"]
    kind = "PREFECT_API_AUTH_STRING" if ":" in credential else "PREFECT_API_KEY"
    env = {**ENV, "PREFECT_CREDENTIAL_SECRET_ARN": arn, "PREFECT_CREDENTIAL_ENV": kind}
    password = credential.split(":", 1)[-1]

    def logs_and_fails(ctx: Context) -> None:
        ctx.log(f"recovery: flow run x: state message quoting {credential} and {password}")
        raise RuntimeError(f"an answer echoing {credential}\nand {password} on a second line")

    with pytest.raises(handler.ControllerError) as raised:
        handler.run_jobs(env, {"recovery": logs_and_fails, "backlog": logs_and_fails})
    monkeypatch.setattr(handler, "build_context", lambda *_, **__: (_ for _ in ()).throw(ValueError(credential)))
    with pytest.raises(handler.ControllerError) as setup:
        handler.run_jobs(env)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 5 and all("***" in line for line in lines), out  # two per job, one for the setup
    for text in (out, str(raised.value), str(setup.value), repr(raised.value.__cause__), repr(setup.value.__cause__)):
        for form in forms:
            assert form not in text, text


def test_mask_takes_the_whole_before_its_password_and_keeps_one_line() -> None:
    assert mask(f"a {AUTH_STRING} b s3cret-Passw0rd\nc", [AUTH_STRING]) == "a *** b *** c"
    assert mask("nothing here", [None, ""]) == "nothing here"
