"""The stack's automations (components/run_automations.py): their specs, their config, the provider's
decisions without a server (fast), and their life on a real local Prefect server (slow).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import BASE_CONFIG, OWNER, load_stack_config, run_program
from pulumi.runtime import rpc

from components.config import ConfigError
from components.run_automations import (
    AutomationError,
    AutomationProvider,
    automation_props,
    stuck_runs_automation,
    zombie_runs_automation,
)

KEY = "pnu_AutomationKeyThatMustNeverLeak5"
NOWHERE = "http://127.0.0.1:9/api"
AUTOMATION = "pulumi-python:dynamic/prefect:Automation"
# `GET /automations/{id}` from a real Prefect 3.9.1 server for props(stuck_runs_automation(OWNER,
# "fargate-pool", 15 min)) as the provider made it (recorded 2026-11-28): the server's trigger id
# and defaults included.
RECORDED = json.loads((Path(__file__).parent / "data" / "automation_stuck_runs_3.9.1.json").read_text())
RECORDED_OWNER = "prefect-fargate/test"  # the recording's mark (the `<project>/<stack>` format of then)


def stuck(pool: str = "fargate-pool", after: timedelta = timedelta(minutes=15)) -> dict[str, Any]:
    return automation_props(stuck_runs_automation(RECORDED_OWNER, pool, after), NOWHERE, {"api_key": KEY})


# -- the specs: what the stack asks Prefect for -------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [zombie_runs_automation(OWNER), stuck_runs_automation(OWNER, "fargate-pool", timedelta(minutes=15))],
    ids=["zombie", "stuck"],
)
def test_specs_are_accepted_by_the_client_and_server_schemas(spec: dict[str, Any]) -> None:
    """The client's schema is the body Prefect Cloud's API takes; the server's is what a self-hosted
    server validates (prefect/server/events/schemas/automations.py)."""
    from prefect.events.schemas.automations import AutomationCore
    from prefect.server.events.schemas.automations import AutomationCore as ServerAutomationCore

    client = AutomationCore.model_validate(spec)
    server = ServerAutomationCore.model_validate(spec)
    assert client.trigger.posture.value == server.trigger.posture.value == "Proactive"
    assert client.trigger.within == server.trigger.within


def test_zombie_runs_crash_after_90_s_without_a_heartbeat() -> None:
    """docs/runs.md's promise, as literals: three missed 30 s beats, then CRASHED; every flow run."""
    spec = zombie_runs_automation(OWNER)
    assert spec["name"] == f"{OWNER}: crash flow runs whose heartbeats stop"
    trigger = spec["trigger"]
    assert (trigger["posture"], trigger["within"], trigger["threshold"]) == ("Proactive", 90, 1)
    assert trigger["after"] == ["prefect.flow-run.heartbeat"] and trigger["expect"] == ["prefect.flow-run.*"]
    assert trigger["for_each"] == ["prefect.resource.id"] and "match_related" not in trigger
    (action,) = spec["actions"]
    assert (action["type"], action["state"]) == ("change-flow-run-state", "CRASHED")


def test_stuck_runs_of_this_pool_crash_after_the_configured_time() -> None:
    spec = stuck_runs_automation(OWNER, "my-pool", timedelta(minutes=20))
    assert spec["name"] == f"{OWNER}: crash flow runs stuck in my-pool"
    trigger = spec["trigger"]
    assert (trigger["posture"], trigger["within"]) == ("Proactive", 1200)
    assert trigger["after"] == ["prefect.flow-run.Pending"]  # not Late: a run queued behind a limit is Late
    assert trigger["match_related"] == {"prefect.resource.role": "work-pool", "prefect.resource.name": "my-pool"}
    (action,) = spec["actions"]
    assert action["state"] == "CRASHED"
    assert action["message"].startswith("Pending for 20 min in work pool my-pool: submitted but never started")


def test_the_program_declares_both_per_stack_with_the_key_secret() -> None:
    run = run_program({**BASE_CONFIG, "workPool": "team-pool", "stuckRunMinutes": "5"})
    automations = {a.plain_inputs["name"]: a for a in run.of_type(AUTOMATION)}
    assert set(automations) == {
        f"{OWNER}: crash flow runs whose heartbeats stop",
        f"{OWNER}: crash flow runs stuck in team-pool",
    }
    stuck_runs = automations[f"{OWNER}: crash flow runs stuck in team-pool"]
    assert stuck_runs.json_input("automation")["trigger"]["within"] == 300
    for automation in automations.values():
        assert automation.inputs["api_key"][rpc._special_sig_key] == rpc._special_secret_sig
        assert automation.plain_inputs["api_url"] == run.outputs["prefectApiUrl"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0", "0 is out of range"), ("1441", "1441 is out of range"), ("soon", "'soon' is not a whole number")],
)
def test_stuck_run_minutes_out_of_range_is_refused_with_the_fix(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_stack_config({**BASE_CONFIG, "stuckRunMinutes": value})
    (line,) = [line.strip() for line in str(raised.value).splitlines() if "stuckRunMinutes" in line]
    assert line.startswith(f"- prefect-fargate:stuckRunMinutes: {problem}. Allowed: 1 to 1440 minutes")
    assert line.endswith("Fix: pulumi config set prefect-fargate:stuckRunMinutes 15")


def test_stuck_run_minutes_default_is_15() -> None:
    assert load_stack_config(BASE_CONFIG).stuck_run_minutes == 15


# -- the provider's decisions, against an automation recorded from a real server ----------------------


class RecordedPrefect:
    """Prefect's sync client as the provider's `diff` uses it, answering with a recorded automation."""

    def __init__(self, automation: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.automation, self.error = automation, error

    def __enter__(self) -> RecordedPrefect:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def read_automation(self, automation_id: str) -> Any:
        from prefect.events.schemas.automations import Automation

        if self.error is not None:
            raise self.error
        if self.automation is None or self.automation["id"] != automation_id:
            return None
        return Automation.model_validate(self.automation)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    def use(automation: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        monkeypatch.setattr(AutomationProvider, "_client", lambda self, _props: RecordedPrefect(automation, error))

    return use


def _diff(olds: dict[str, Any] | None = None, news: dict[str, Any] | None = None) -> Any:
    state = {**stuck(), "automation_id": RECORDED["id"], **(olds or {})}
    return AutomationProvider().diff(RECORDED["id"], state, news or stuck())


def test_the_recorded_automation_as_declared_is_no_drift(serve: Callable[..., None]) -> None:
    serve(RECORDED)
    assert _diff().changes is False


def _disabled(live: dict[str, Any]) -> None:
    live["enabled"] = False


def _window(live: dict[str, Any]) -> None:
    live["trigger"]["within"] = 3600.0


def _other_pool(live: dict[str, Any]) -> None:
    live["trigger"]["match_related"]["prefect.resource.name"] = "another-pool"


def _action(live: dict[str, Any]) -> None:
    live["actions"][0]["state"] = "CANCELLED"


def _event(live: dict[str, Any]) -> None:
    live["trigger"]["after"] = ["prefect.flow-run.Pending", "prefect.flow-run.Late"]


@pytest.mark.parametrize("edit", [_disabled, _window, _other_pool, _action, _event], ids=lambda e: e.__name__[1:])
def test_an_automation_edited_in_the_ui_is_drift(serve: Callable[..., None], edit: Any) -> None:
    live = copy.deepcopy(RECORDED)
    edit(live)
    serve(live)
    assert _diff().changes is True


def test_fields_the_server_fills_in_are_not_drift(serve: Callable[..., None]) -> None:
    live = copy.deepcopy(RECORDED)
    live["tags"] = ["added-by-someone"]
    live["trigger"]["after"] = list(reversed(live["trigger"]["after"]))  # a set: no order
    live["actions_on_resolve"] = []
    serve(live)
    assert _diff().changes is False


def test_deleted_by_hand_is_drift_and_declared_changes_need_no_server(serve: Callable[..., None]) -> None:
    serve(None)
    assert _diff().changes is True
    serve(error=AssertionError("the server must not be asked"))
    assert _diff(news=stuck(after=timedelta(minutes=30))).changes is True
    assert _diff(news={**stuck(), "api_key": "pnu_rotated"}).changes is True
    assert _diff(news={**stuck(), "api_url": "http://127.0.0.1:8/api"}).replaces == ["api_url"]


def test_an_outage_is_no_drift_known_and_a_refusal_fails(serve: Callable[..., None], warnings_seen: list[str]) -> None:
    import httpx

    serve(error=httpx.ConnectError(f"connection refused for {NOWHERE}/{KEY}"))
    assert _diff().changes is False
    (warning,) = warnings_seen
    assert warning.startswith("Prefect automation 'prefect-fargate/test: crash flow runs stuck in fargate-pool'")
    assert "not checked for drift: cannot reach the Prefect API" in warning
    assert KEY not in warning and "***" in warning
    request = httpx.Request("GET", NOWHERE)
    serve(error=httpx.HTTPStatusError("401", request=request, response=httpx.Response(401, request=request)))
    with pytest.raises(AutomationError, match="refused the API key"):
        _diff()


def test_check_refuses_a_spec_prefect_would_refuse() -> None:
    bad = stuck()
    body = json.loads(bad["automation"])
    body["trigger"]["within"] = 5  # proactive triggers need at least 10 s
    result = AutomationProvider().check({}, {**bad, "automation": json.dumps(body)})
    (failure,) = result.failures
    assert failure.property == "automation" and "10 seconds" in failure.reason
    assert AutomationProvider().check({}, stuck()).failures == []
    assert AutomationProvider().check({}, {**stuck(), "automation": rpc.UNKNOWN}).failures == []


# -- on a real local Prefect server ------------------------------------------------------------------


@pytest.fixture
def server_props(prefect_servers: Any) -> Callable[..., dict[str, Any]]:
    server = prefect_servers[0]

    def props(pool: str, after: timedelta = timedelta(minutes=15)) -> dict[str, Any]:
        return automation_props(stuck_runs_automation(OWNER, pool, after), server.url, {"api_key": KEY})

    return props


def _live(server: Any, automation_id: str) -> dict[str, Any]:
    return server.api("GET", f"/automations/{automation_id}")


def _named(server: Any, name: str) -> list[dict[str, Any]]:
    return [a for a in server.api("POST", "/automations/filter", {}) if a["name"] == name]


@pytest.mark.slow
def test_create_apply_again_drift_put_back_and_delete(
    prefect_servers: Any, server_props: Callable[..., dict[str, Any]]
) -> None:
    server, provider = prefect_servers[0], AutomationProvider()
    props = server_props("crud-pool")
    created = provider.create(props)
    live = _live(server, created.id)
    assert live["name"] == props["name"] and live["trigger"]["within"] == 900
    state = created.outs

    assert provider.diff(created.id, state, props).changes is False  # `pulumi up` again: nothing to do
    assert provider.create(props).id == created.id  # state lost: adopted by its name, not made twice
    assert len(_named(server, props["name"])) == 1

    server.api("PATCH", f"/automations/{created.id}", {"enabled": False})
    assert provider.diff(created.id, state, props).changes is True
    provider.update(created.id, state, props)
    assert _live(server, created.id)["enabled"] is True
    assert provider.diff(created.id, state, props).changes is False

    longer = server_props("crud-pool", timedelta(minutes=30))  # stuckRunMinutes changed
    assert provider.diff(created.id, state, longer).changes is True
    state = provider.update(created.id, state, longer).outs
    assert _live(server, created.id)["trigger"]["within"] == 1800

    provider.delete(created.id, state)
    assert _named(server, props["name"]) == []
    provider.delete(created.id, state)  # already gone: fine


@pytest.mark.slow
def test_deleted_by_hand_is_made_again_and_followed_by_its_new_id(
    prefect_servers: Any, server_props: Callable[..., dict[str, Any]]
) -> None:
    server, provider = prefect_servers[0], AutomationProvider()
    props = server_props("redo-pool")
    created = provider.create(props)
    server.api("DELETE", f"/automations/{created.id}")
    assert provider.read(created.id, created.outs).id == ""  # refresh: gone
    assert provider.diff(created.id, created.outs, props).changes is True
    state = provider.update(created.id, created.outs, props).outs
    assert state["automation_id"] != created.id
    assert provider.diff(created.id, state, props).changes is False  # the engine keeps the first id
    provider.delete(created.id, state)
    assert _named(server, props["name"]) == []


@pytest.mark.slow
def test_a_run_left_pending_in_this_pool_is_crashed_after_the_configured_time(prefect_servers: Any) -> None:
    """stuckRunMinutes made small (the trigger's minimum, 10 s): a run of this pool left PENDING is
    CRASHED with the reason; a run of another pool, left the same way at the same time, is not."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import StateType
    from prefect.states import Pending

    server = prefect_servers[0]
    window = timedelta(seconds=10)
    provider = AutomationProvider()
    spec = stuck_runs_automation(OWNER, "stuck-pool", window)
    created = provider.create(automation_props(spec, server.url, {"api_key": KEY}))
    with SyncPrefectClient(server.url) as client:
        runs = {}
        for pool in ("stuck-pool", "other-pool"):
            server.api("POST", "/work_pools/", {"name": pool, "type": "process"})
            flow_id = client.create_flow_from_name(f"flow-of-{pool}")
            deployment = client.create_deployment(flow_id=flow_id, name="d", work_pool_name=pool)
            runs[pool] = client.create_flow_run_from_deployment(deployment).id
        left_pending = time.monotonic()
        for run_id in runs.values():
            assert client.set_flow_run_state(run_id, Pending()).status.value == "ACCEPT"

        def state_of(run_id: UUID) -> Any:
            return client.read_flow_run(run_id).state

        deadline = left_pending + 60
        while state_of(runs["stuck-pool"]).type != StateType.CRASHED and time.monotonic() < deadline:
            time.sleep(0.5)
        crashed = state_of(runs["stuck-pool"])
        took = time.monotonic() - left_pending
        assert crashed.type == StateType.CRASHED, f"still {crashed.type} after {took:.0f} s"
        assert crashed.message.startswith("Pending for 10 s in work pool stuck-pool")
        assert took >= window.total_seconds()
        assert state_of(runs["other-pool"]).type == StateType.PENDING
    print(f"crashed {took:.1f} s after it was left pending (window {window.total_seconds():.0f} s)")
    provider.delete(created.id, created.outs)
