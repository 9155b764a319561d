"""The controller's Prefect REST client with a fake HTTP opener (controller/prefect_rest.py): what each request
carries (the change's body and force flag, the events query, paging), where a next-page link is followed, how a
lower server limit is met, how the invocation's time bounds each call, and how a rejected credential is read again.
The same against a real server with a low limit: tests/test_controller_runtime.py."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import API_KEY as KEY

from controller import recovery
from controller.prefect_rest import (
    EVENTS_PAGE,
    PAGE,
    OutOfTime,
    PrefectError,
    PrefectRest,
    allowed_limit,
    auth_header,
)

API = "https://prefect.example/api"


class Answer(io.BytesIO):
    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


@dataclass
class Sent:
    method: str
    url: str
    body: Any
    timeout: float
    authorization: str | None

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.url).path.removeprefix("/api")


@dataclass
class FakeApi:
    """An opener: `route(sent)` answers each request with (status, JSON); every request is recorded."""

    route: Callable[[Sent], tuple[int, Any]]
    sent: list[Sent] = field(default_factory=list)

    def __call__(self, request: Any, timeout: float) -> Any:
        body = json.loads(request.data) if request.data else None
        sent = Sent(request.get_method(), request.full_url, body, timeout, request.get_header("Authorization"))
        self.sent.append(sent)
        status, answer = self.route(sent)
        data = json.dumps(answer).encode()
        if status != 200:
            raise urllib.error.HTTPError(request.full_url, status, "refused", {}, io.BytesIO(data))  # type: ignore[arg-type]
        return Answer(data)


def client(api: FakeApi, **kwargs: Any) -> PrefectRest:
    return PrefectRest(API, auth_header(KEY, "PREFECT_API_KEY"), api, **kwargs)


def runs(start: int, count: int) -> list[dict[str, Any]]:
    return [{"id": f"run-{n}", "state": {"type": "RUNNING"}} for n in range(start, start + count)]


# -- the change --------------------------------------------------------------------------------------------------------


def test_a_change_is_one_set_state_through_orchestration_never_forced() -> None:
    api = FakeApi(lambda sent: (200, {"status": "ACCEPT", "details": {}}))
    state = recovery.new_state(
        recovery.Verdict("run-1", "s", "retry", "why"), recovery.parse_time("2026-12-04T12:00:00+00:00")
    )
    assert client(api).set_state("run-1", state) == {"status": "ACCEPT", "details": {}}
    (sent,) = api.sent
    assert (sent.method, sent.url) == ("POST", f"{API}/flow_runs/run-1/set_state")
    assert sent.body == {
        "state": {
            "type": "SCHEDULED",
            "name": "AwaitingRetry",
            "message": "why",
            "state_details": {"scheduled_time": "2026-12-04T12:00:00+00:00"},
        },
        "force": False,
    }
    assert sent.authorization == f"Bearer {KEY}"


def test_auth_headers_are_what_prefects_client_sends() -> None:
    assert auth_header(KEY, "PREFECT_API_KEY") == {"Authorization": f"Bearer {KEY}"}
    assert auth_header("u:p", "PREFECT_API_AUTH_STRING") == {"Authorization": "Basic dTpw"}
    assert auth_header(None, "PREFECT_API_KEY") == {}


# -- listings: every page, or nothing ----------------------------------------------------------------------------------


def test_every_page_of_a_listing_is_read_at_the_page_size() -> None:
    pool = [*runs(0, 450)]
    api = FakeApi(lambda sent: (200, pool[sent.body["offset"] : sent.body["offset"] + sent.body["limit"]]))
    listed = client(api).pool_runs("fargate-pool", ["RUNNING", "PENDING"])
    assert [r["id"] for r in listed] == [r["id"] for r in pool]
    assert [(s.body["offset"], s.body["limit"]) for s in api.sent] == [(0, PAGE), (200, PAGE), (400, PAGE)]
    assert api.sent[0].body == {
        "work_pools": {"name": {"any_": ["fargate-pool"]}},
        "flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING"]}}},
        "sort": "ID_DESC",
        "limit": PAGE,
        "offset": 0,
    }


def test_a_run_seen_on_two_pages_is_listed_once() -> None:
    pages = {0: runs(0, 200), 200: runs(199, 10)}  # run-199 moved up a place between the two reads
    api = FakeApi(lambda sent: (200, pages[sent.body["offset"]]))
    assert len(client(api).pool_runs("p", ["RUNNING"])) == 209


def test_a_failing_second_page_fails_the_listing_and_recovery_changes_nothing() -> None:
    def route(sent: Sent) -> tuple[int, Any]:
        if sent.path == "/flow_runs/filter":
            return (503, {"detail": "busy"}) if sent.body["offset"] else (200, runs(0, 200))
        raise AssertionError(f"nothing else may be asked: {sent.method} {sent.path}")

    api = FakeApi(route)
    with pytest.raises(PrefectError, match=r"POST /api/flow_runs/filter: HTTP 503"):
        client(api).pool_runs("p", ["RUNNING"])
    from test_controller_recovery import context

    with pytest.raises(PrefectError):
        recovery.run(context(client(FakeApi(route))))
    assert not [s for s in api.sent if s.path.endswith("/set_state")]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"detail": "Invalid limit: must be less than or equal to 50."}, 50),  # LimitBody (dependencies.py)
        ({"exception_detail": [{"loc": ["body", "limit"], "ctx": {"le": 25}}]}, 25),  # a Body(le=...) field
        ({"detail": "Invalid limit"}, 100),  # no number named: half
        ({"exception_detail": [{"loc": ["body", "limit"], "ctx": {}}]}, 100),
        ({"detail": "Invalid sort"}, 0),  # not about the limit: not retried
        ({"exception_detail": [{"loc": ["body", "offset"]}]}, 0),
    ],
)
def test_a_422_about_the_limit_names_the_servers_limit(answer: dict[str, Any], expected: int) -> None:
    assert allowed_limit(json.dumps(answer).encode(), 200) == expected


def test_a_server_with_a_lower_limit_is_paged_at_its_limit_for_the_rest_of_the_invocation() -> None:
    pool = runs(0, 120)

    def route(sent: Sent) -> tuple[int, Any]:
        if sent.body["limit"] > 50:
            return 422, {"detail": "Invalid limit: must be less than or equal to 50."}
        return 200, pool[sent.body.get("offset", 0) :][: sent.body["limit"]]

    api = FakeApi(route)
    rest = client(api)
    assert len(rest.pool_runs("p", ["RUNNING"])) == 120
    assert [s.body["limit"] for s in api.sent] == [200, 50, 50, 50]
    assert [s.body["offset"] for s in api.sent] == [0, 0, 50, 100]
    rest.request("POST", "/flow_runs/filter", {"limit": 200, "sort": "END_TIME_DESC"})  # another listing, later
    assert api.sent[-1].body["limit"] == 50  # the limit learned, no second 422


def test_a_422_the_limit_does_not_cure_is_an_error_after_halving_down_to_one() -> None:
    api = FakeApi(lambda sent: (422, {"detail": "Invalid limit"}))
    with pytest.raises(PrefectError, match="HTTP 422"):
        client(api).pool_runs("p", ["RUNNING"])
    assert [s.body["limit"] for s in api.sent] == [200, 100, 50, 25, 12, 6, 3, 1]


# -- events: one per run, every page, on the stack's URL ---------------------------------------------------------------


def test_heartbeats_are_asked_one_event_per_run_and_every_next_page_is_read_on_the_stacks_url() -> None:
    def event(run: str) -> dict[str, Any]:
        return {"resource": {"prefect.resource.id": f"prefect.flow-run.{run}"}}

    pages = {
        "": {"events": [event("a")], "next_page": "http://10.0.0.5:4200/api/events/filter/next?page-token=b25l"},
        "b25l": {"events": [event("b")], "next_page": "https://elsewhere.example/x/events/filter/next?page-token=dHdv"},
        "dHdv": {"events": [event("c")], "next_page": None},
    }

    def route(sent: Sent) -> tuple[int, Any]:
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(sent.url).query).get("page-token", [""])[0]
        return 200, pages[token]

    api = FakeApi(route)
    heard = client(api).runs_heard_from(["a", "b", "c", "d"], recovery.HEARTBEAT, "s", "u")
    assert heard == {"a", "b", "c"}
    first, *rest = api.sent
    assert (first.method, first.url) == ("POST", f"{API}/events/filter")
    assert first.body == {
        "filter": {
            "occurred": {"since": "s", "until": "u"},
            "event": {"name": ["prefect.flow-run.heartbeat"]},
            "resource": {"id": [f"prefect.flow-run.{r}" for r in "abcd"], "distinct": True},
        },
        "limit": EVENTS_PAGE,
    }
    # A proxy's http:// link and a link naming another host: followed by their query only, on the stack's URL.
    assert [(s.method, s.url) for s in rest] == [
        ("GET", f"{API}/events/filter/next?page-token=b25l"),
        ("GET", f"{API}/events/filter/next?page-token=dHdv"),
    ]
    assert {s.authorization for s in api.sent} == {f"Bearer {KEY}"}


@pytest.mark.parametrize("link", ["https://prefect.example/api/flow_runs/filter?x=1", "/api/events/filter/next"])
def test_a_next_page_link_to_anything_but_the_next_events_page_is_refused(link: str) -> None:
    api = FakeApi(lambda sent: (200, {"events": [], "next_page": link}))
    with pytest.raises(PrefectError, match="not /events/filter/next"):
        client(api).runs_heard_from(["r"], recovery.HEARTBEAT, "a", "b")
    assert len(api.sent) == 1


def test_a_failing_next_events_page_fails_the_whole_read() -> None:
    def route(sent: Sent) -> tuple[int, Any]:
        if sent.method == "POST":
            return 200, {"events": [], "next_page": f"{API}/events/filter/next?page-token=eA=="}
        return 502, {}

    with pytest.raises(PrefectError, match="GET /api/events/filter/next: HTTP 502"):
        client(FakeApi(route)).runs_heard_from(["r"], recovery.HEARTBEAT, "a", "b")


# -- time, outages, credentials ----------------------------------------------------------------------------------------


def test_each_calls_timeout_is_the_invocations_time_left_at_most_ten_seconds_and_none_starts_after_it() -> None:
    left = [30.0]
    api = FakeApi(lambda sent: (200, []))
    rest = client(api, time_left=lambda: left[0])
    for left[0] in (30.0, 10.0, 4.5, 0.2):
        rest.request("GET", "/flow_runs/x")
    assert [s.timeout for s in api.sent] == [10, 10, 4.5, 0.2]
    for left[0] in (0.0, -3.0):
        with pytest.raises(OutOfTime, match="not sent, the invocation's time is up"):
            rest.request("GET", "/flow_runs/x")
    assert len(api.sent) == 4


def test_http_errors_and_outages_are_one_line_without_the_credential() -> None:
    def down(request: Any, timeout: float) -> Any:
        raise urllib.error.URLError(ConnectionRefusedError(111, f"Connection refused {KEY}"))

    rejected = FakeApi(lambda sent: (500, {"detail": KEY}))
    for opener, expected in ((rejected, "HTTP 500 (refused)"), (down, "unreachable (ConnectionRefusedError")):
        with pytest.raises(PrefectError) as caught:
            client(opener).pool_runs("fargate-pool", ["RUNNING"])  # type: ignore[arg-type]
        assert expected in str(caught.value) and "\n" not in str(caught.value)
        assert KEY not in str(caught.value) or opener is down  # the handler masks what a reason may echo


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_credential_is_read_again_once_and_the_request_sent_again(status: int) -> None:
    renewed: list[int] = []

    def renew() -> dict[str, str]:
        renewed.append(1)
        return auth_header("pnu_Rotated", "PREFECT_API_KEY")

    api = FakeApi(lambda sent: (200, []) if sent.authorization == "Bearer pnu_Rotated" else (status, {}))
    rest = client(api, renew=renew)
    assert rest.request("GET", "/flow_runs/x") == []
    assert [s.authorization for s in api.sent] == [f"Bearer {KEY}", "Bearer pnu_Rotated"] and renewed == [1]

    still = FakeApi(lambda sent: (status, {}))
    rest = client(still, renew=renew)
    reason = {401: "credential rejected", 403: "credential not allowed"}[status]
    with pytest.raises(PrefectError, match=rf"HTTP {status} \({reason}\)"):
        rest.request("GET", "/flow_runs/x")
    with pytest.raises(PrefectError):
        rest.request("GET", "/flow_runs/x")  # read again once per invocation, not per call
    assert len(still.sent) == 3 and renewed == [1, 1]
