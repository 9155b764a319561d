"""The backlog job's rules (controller/backlog.py): workers wanted, what is published, with fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.backlog import (
    Backlog,
    BacklogSettings,
    metric_data,
    read_backlog,
    start_delay_p50,
    tick,
    workers_wanted,
)

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


def settings(**changes: Any) -> BacklogSettings:
    base: dict[str, Any] = dict(
        namespace="prefect-fargate-test",
        work_pool="fargate-pool",
        pool_type="process",
        run_limit=4,
        min_workers=0,
        max_workers=5,
        lead=timedelta(minutes=3),
        quiet=timedelta(minutes=10),
    )
    return BacklogSettings(**{**base, **changes})


def backlog(**counts: Any) -> Backlog:
    base: dict[str, Any] = dict(
        due=0,
        late=0,
        pending=0,
        running=0,
        oldest_late_seconds=0.0,
        start_delay_p50_seconds=None,
        last_end_seconds=None,
        quiet_seconds=600.0,
    )
    return Backlog(**{**base, **counts})


CASES = [
    ("idle-to-zero", backlog(), {}, 0),
    ("idle-keeps-min", backlog(), {"min_workers": 1}, 1),
    ("one-due", backlog(due=1), {}, 1),
    ("limit-fills-a-worker", backlog(due=2, pending=1, running=1), {}, 1),
    ("one-more-than-a-limit", backlog(due=3, running=2), {}, 2),
    ("burst-capped-at-max", backlog(due=100), {}, 5),
    ("quiet-period-keeps-one", backlog(last_end_seconds=120.0), {}, 1),
    ("after-the-quiet-period", backlog(last_end_seconds=700.0), {}, 0),
    ("ecs-due", backlog(due=40), {"pool_type": "ecs", "max_workers": 1}, 1),
    ("ecs-running-only", backlog(running=7), {"pool_type": "ecs", "max_workers": 1}, 1),  # quiet: not idle
    ("ecs-idle", backlog(), {"pool_type": "ecs", "max_workers": 1}, 0),
    ("fixed-count", backlog(due=100), {"min_workers": 2, "max_workers": 2}, 2),
]


@pytest.mark.parametrize(("state", "changes", "wanted"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_workers_wanted(state: Backlog, changes: dict[str, Any], wanted: int) -> None:
    assert workers_wanted(state, settings(**changes)) == wanted


def test_an_idle_pool_publishes_workers_wanted_only() -> None:
    (datum,) = metric_data(backlog(), 0, "fargate-pool", NOW)
    assert (datum["MetricName"], datum["Value"], datum["Dimensions"]) == (
        "WorkersWanted",
        0,
        [{"Name": "WorkPool", "Value": "fargate-pool"}],
    )


def test_an_idle_pool_publishes_through_a_tail_that_sends_the_drop_to_min_then_nothing() -> None:
    """Scaling needs no idle data (the tail's value set minWorkers; missing data moves nothing), and the controller's
    liveness is watched on Lambda's own metrics: an idle pool's metric has no data, and costs nothing."""
    tail = backlog(last_end_seconds=700.0)  # quiet period (600 s) over, within its 3-minute tail
    assert tail.publish_now and backlog(running=1).publish_now and backlog(due=1).publish_now
    assert not backlog().publish_now  # past the tail: no run ended within quiet + tail


def test_an_idle_pool_publishes_nothing_at_any_minute() -> None:
    published: list[Any] = []

    class CloudWatch:
        def put_metric_data(self, **kwargs: Any) -> None:
            published.append(kwargs)

    for minute in range(60):
        assert tick(Recording(), CloudWatch(), settings(), NOW + timedelta(minutes=minute)) == 0  # an idle pool
    assert published == []


def test_a_busy_pool_publishes_every_count() -> None:
    data = metric_data(backlog(due=3, late=1, pending=2, running=4, oldest_late_seconds=90.0,
                               start_delay_p50_seconds=7.5), 3, "p", NOW)  # fmt: skip
    assert {d["MetricName"]: d["Value"] for d in data} == {
        "WorkersWanted": 3,
        "RunsDue": 3,
        "RunsLate": 1,
        "RunsPending": 2,
        "RunsRunning": 4,
        "OldestLateRunAge": 90.0,
        "StartDelayP50": 7.5,
    }


def test_start_delay_is_the_median_of_runs_that_started() -> None:
    runs = [
        {"expected_start_time": "2026-12-04T02:00:00Z", "start_time": "2026-12-04T02:00:05Z"},
        {"expected_start_time": "2026-12-04T02:00:00Z", "start_time": "2026-12-04T02:00:20Z"},
        {"expected_start_time": "2026-12-04T02:00:00Z", "start_time": "2026-12-04T02:01:00Z"},
        {"expected_start_time": "2026-12-04T02:00:00Z", "start_time": None},
    ]
    assert start_delay_p50(runs) == 20.0
    assert start_delay_p50([]) is None


class Unreachable:
    def request(self, method: str, path: str, body: Any = None) -> Any:
        raise ConnectionError("Prefect API unreachable")


def test_an_unreachable_api_publishes_nothing_so_nothing_scales() -> None:
    published: list[Any] = []

    class CloudWatch:
        def put_metric_data(self, **kwargs: Any) -> None:
            published.append(kwargs)

    with pytest.raises(ConnectionError):
        tick(Unreachable(), CloudWatch(), settings(), NOW)
    assert published == []


class Recording:
    """A Prefect API that answers from `answers` (path, sort) -> reply and records every request."""

    def __init__(self, answers: dict[tuple[str, str | None], Any] | None = None) -> None:
        self.answers = answers or {}
        self.requests: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, body: Any = None) -> Any:
        self.requests.append((method, path, body))
        return self.answers.get((path, body.get("sort")), 0 if path == "/flow_runs/count" else [])


def test_the_backlog_reads_are_these_request_bodies() -> None:
    """Due is counted by next_scheduled_start_time up to now + the lead time (a rescheduled run keeps its first
    expected_start_time); every call is limited to the pool; the oldest Late run comes first by the same time."""
    late = {"next_scheduled_start_time": "2026-12-04T01:40:00Z", "expected_start_time": "2026-12-04T00:00:00Z"}
    prefect = Recording({("/flow_runs/filter", "NEXT_SCHEDULED_START_TIME_ASC"): [late]})
    read_backlog(prefect, settings(lead=timedelta(minutes=7)), NOW)
    pool = {"work_pools": {"name": {"any_": ["fargate-pool"]}}}
    due_by = {"next_scheduled_start_time": {"before_": "2026-12-04T02:07:00+00:00"}}  # NOW + the 7-minute lead
    now = "2026-12-04T02:00:00+00:00"  # past its start: any SCHEDULED-type run, not only Late ones (AwaitingRetry)
    assert prefect.requests == [
        ("POST", "/flow_runs/count", {**pool, "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}, **due_by}}),
        ("POST", "/flow_runs/count", {**pool, "flow_runs": {"state": {"type": {"any_": ["PENDING"]}}}}),
        ("POST", "/flow_runs/count", {**pool, "flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}),
        ("POST", "/flow_runs/filter", {**pool, "flow_runs": {"end_time": {"after_": "2026-12-04T01:47:00+00:00"}},
                                       "sort": "END_TIME_DESC", "limit": 1}),
        ("POST", "/flow_runs/filter", {**pool, "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}},
                                                             "next_scheduled_start_time": {"before_": now}},
                                       "sort": "NEXT_SCHEDULED_START_TIME_ASC", "limit": 1}),
        ("POST", "/flow_runs/count", {**pool, "flow_runs": {"state": {"name": {"any_": ["Late"]}}}}),
        ("POST", "/flow_runs/filter", {**pool, "flow_runs": {"start_time": {"after_": "2026-12-04T01:00:00+00:00"}},
                                       "sort": "START_TIME_DESC", "limit": 20}),
    ]  # fmt: skip


def test_the_oldest_late_run_is_aged_from_when_it_was_next_due() -> None:
    """A Late run rescheduled once is late since its next scheduled start (what the server's Late-run service
    stamps), not since its first expected start."""
    late = {"next_scheduled_start_time": "2026-12-04T01:40:00Z", "expected_start_time": "2026-12-04T00:00:00Z"}
    prefect = Recording({("/flow_runs/filter", "NEXT_SCHEDULED_START_TIME_ASC"): [late]})
    assert read_backlog(prefect, settings(), NOW).oldest_late_seconds == 20 * 60
