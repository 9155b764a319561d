"""The run notifications (components/run_notifications.py): their specs and config (fast), the block
resolution of their provider (fast, against a stand-in client), and on real local Prefect servers
(slow): created, kept, deleted; a failing flow run and a pool without a worker notify a webhook.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import API_KEY, BASE_CONFIG, OWNER, load_stack_config, run_program, run_pulumi
from pulumi.runtime import rpc

from components.config import ConfigError
from components.run_automations import AutomationError, automation_props
from components.run_notifications import (
    UNRESOLVED_BLOCK,
    NotificationProvider,
    RunNotifications,
    RunNotificationsArgs,
    failed_runs_notification,
    pool_not_ready_notification,
)
from devtools.harness import Cluster, WebhookRecorder, create_declared, local_cluster, wait_for

AUTOMATION = "pulumi-python:dynamic/prefect:Automation"
BLOCK = "custom-webhook/ops"
NOWHERE = "http://127.0.0.1:9/api"
# A token the block holds (a custom webhook's `secrets`): a notification must never carry it.
BLOCK_SECRET = "xoxb-BlockSecretThatMustNeverLeak42"
SPECS = {
    "failed-runs": failed_runs_notification(OWNER, "fargate-pool", BLOCK),
    "pool-not-ready": pool_not_ready_notification(OWNER, "fargate-pool", BLOCK),
}


def props(spec: dict[str, Any], url: str = NOWHERE) -> dict[str, Any]:
    return automation_props(spec, url, {"api_key": API_KEY})


def body_without_server(spec: dict[str, Any]) -> dict[str, Any]:
    """What the provider's `check` validates: the block not resolved yet."""
    body: dict[str, Any] = NotificationProvider()._body(props(spec), None)
    return {**body, "name": spec["name"]}


# -- the specs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_specs_are_accepted_by_the_client_and_server_schemas(spec: dict[str, Any]) -> None:
    """The client's schema is the body Prefect Cloud's API takes; the server's validates the templates."""
    from prefect.events.schemas.automations import AutomationCore
    from prefect.server.events.schemas.automations import AutomationCore as ServerAutomationCore

    body = body_without_server(spec)
    assert "notify_block" not in json.dumps(body)  # our own field never reaches Prefect
    client = AutomationCore.model_validate(body)
    server = ServerAutomationCore.model_validate(body)
    assert [a.type for a in client.actions] == [a.type for a in server.actions] == ["send-notification"]
    assert NotificationProvider().check({}, props(spec)).failures == []


def test_a_run_of_this_pool_that_fails_or_crashes_notifies_with_its_name_and_state() -> None:
    spec = failed_runs_notification(OWNER, "team-pool", BLOCK)
    assert spec["name"] == f"{OWNER}: notify when a flow run of team-pool fails or crashes"
    trigger = spec["trigger"]
    assert (trigger["posture"], trigger["threshold"], trigger["within"]) == ("Reactive", 1, 0)
    assert trigger["match"]["prefect.state-type"] == ["FAILED", "CRASHED"]  # types: TimedOut is FAILED too
    assert trigger["match_related"] == {"prefect.resource.role": "work-pool", "prefect.resource.name": "team-pool"}
    (action,) = spec["actions"]
    for template in ("{{ flow_run.name }}", "{{ flow_run.state.name }}"):
        assert template in action["subject"] and template in action["body"]
    assert "work pool team-pool" in action["body"]


def test_templates_render_the_run_and_its_state_with_prefects_own_renderer() -> None:
    """Rendered by the server's sandboxed Jinja (what `send-notification` uses) with a failed run."""
    from prefect.server.schemas.core import Flow, FlowRun
    from prefect.server.schemas.states import Failed
    from prefect.server.utilities.user_templates import render_user_template_sync

    (action,) = failed_runs_notification(OWNER, "team-pool", BLOCK)["actions"]
    run = FlowRun(name="dandy-otter", flow_id=uuid.uuid4(), state=Failed(message="ValueError: boom"))
    context = {"flow_run": run, "flow": Flow(name="nightly-etl")}
    subject = render_user_template_sync(action["subject"], context)
    body = render_user_template_sync(action["body"], context)
    assert subject == "Prefect flow run dandy-otter ended Failed"
    assert body.startswith("Flow run nightly-etl/dandy-otter of work pool team-pool ended Failed at ")
    assert "State message: ValueError: boom" in body


def test_a_pool_without_a_worker_for_5_minutes_notifies() -> None:
    spec = pool_not_ready_notification(OWNER, "team-pool", BLOCK)
    assert spec["name"] == f"{OWNER}: notify when work pool team-pool has no worker"
    trigger = spec["trigger"]
    assert (trigger["posture"], trigger["within"]) == ("Proactive", 300)
    assert trigger["after"] == ["prefect.work-pool.not-ready"]
    assert trigger["expect"] == ["prefect.work-pool.ready", "prefect.work-pool.paused"]
    assert trigger["match"] == {"prefect.resource.id": "prefect.work-pool.*", "prefect.resource.name": "team-pool"}
    (action,) = spec["actions"]
    assert action["subject"] == "Prefect work pool team-pool has had no worker for 5 min"


# -- config and program ------------------------------------------------------------------------------


NO_WORKER = f"{OWNER}: notify when work pool team-pool has no worker"
FAILED_RUNS = f"{OWNER}: notify when a flow run of team-pool fails or crashes"


@pytest.mark.parametrize(
    ("always_on", "notices"), [(0, {FAILED_RUNS}), (1, {FAILED_RUNS, NO_WORKER}), (3, {FAILED_RUNS, NO_WORKER})]
)
def test_the_no_worker_notice_is_only_for_workers_meant_to_be_always_on(always_on: int, notices: set[str]) -> None:
    args = RunNotificationsArgs(
        pool_name="team-pool",
        notify_block=BLOCK,
        always_on_workers=always_on,
        prefect_api_url=NOWHERE,
        prefect_credential=None,
    )
    run = run_pulumi(lambda: RunNotifications("notifications", args))
    assert {a.plain_inputs["name"] for a in run.of_type(AUTOMATION)} == notices


@pytest.mark.parametrize(
    ("workers", "notices"),
    [
        ({"minWorkers": "0", "maxWorkers": "2"}, {FAILED_RUNS}),  # scaled to zero between runs: no nightly notice
        ({"desiredCount": "0"}, {FAILED_RUNS}),  # parked on purpose
        ({"minWorkers": "1", "maxWorkers": "3"}, {FAILED_RUNS, NO_WORKER}),
    ],
    ids=["min-0", "desired-0", "min-1"],
)
def test_a_stack_scaled_to_zero_gets_no_no_worker_notice(workers: dict[str, str], notices: set[str]) -> None:
    """At minWorkers 0 the pool is Not Ready every night by design; the late-runs alarm covers a due run. (The
    default, desiredCount 1, has both: the test below.)"""
    run = run_program({**BASE_CONFIG, "workPool": "team-pool", "prefectNotifyBlock": BLOCK, **workers})
    names = {a.plain_inputs["name"] for a in run.of_type(AUTOMATION)}
    assert {name for name in names if ": notify when" in name} == notices
    late_runs = [a for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.name.endswith("-late-runs")]
    assert len(late_runs) == 1  # what watches a stack scaled to zero instead


def test_without_a_block_there_is_no_notification_and_with_one_both_per_stack() -> None:
    names = {a.plain_inputs["name"] for a in run_program(BASE_CONFIG).of_type(AUTOMATION)}
    assert not any("notify" in name for name in names)
    run = run_program({**BASE_CONFIG, "workPool": "team-pool", "prefectNotifyBlock": "slack-webhook/ops-alerts"})
    notifications = {a.plain_inputs["name"]: a for a in run.of_type(AUTOMATION) if "notify" in a.plain_inputs["name"]}
    assert set(notifications) == {
        f"{OWNER}: notify when a flow run of team-pool fails or crashes",
        f"{OWNER}: notify when work pool team-pool has no worker",
    }
    for automation in notifications.values():
        assert automation.inputs["api_key"][rpc._special_sig_key] == rpc._special_secret_sig
        assert automation.plain_inputs["api_url"] == run.outputs["prefectApiUrl"]
        (action,) = automation.json_input("automation")["actions"]
        assert action["notify_block"] == "slack-webhook/ops-alerts"


@pytest.mark.parametrize(
    "value",
    ["ops-alerts", "Slack-Webhook/ops", "slack-webhook/ops/alerts", "slack webhook/ops", "slack-webhook/"],
)
def test_a_block_not_named_slug_slash_name_is_refused_with_the_fix(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_stack_config({**BASE_CONFIG, "prefectNotifyBlock": value})
    (line,) = [line.strip() for line in str(raised.value).splitlines() if "prefectNotifyBlock" in line]
    assert line.startswith(f"- prefect-fargate:prefectNotifyBlock: {value!r} is not <block-type-slug>/<block-name>")
    assert line.endswith("Fix: pulumi config set prefect-fargate:prefectNotifyBlock slack-webhook/ops-alerts")


def test_a_block_with_alarms_off_is_refused_and_a_good_one_is_kept() -> None:
    with pytest.raises(ConfigError, match="prefectNotifyBlock: is set but alarms is false"):
        load_stack_config({**BASE_CONFIG, "alarms": "false", "prefectNotifyBlock": BLOCK})
    assert load_stack_config({**BASE_CONFIG, "prefectNotifyBlock": BLOCK}).prefect_notify_block == BLOCK
    assert load_stack_config(BASE_CONFIG).prefect_notify_block is None


# -- the block, resolved by the provider (a stand-in for Prefect's client) -----------------------------


class Blocks:
    """Prefect's sync client as `notify_block_id` uses it: one block document, or none."""

    def __init__(self, document: Any = None) -> None:
        self.document, self.asked = document, []

    def read_block_document_by_name(self, name: str, block_type_slug: str, include_secrets: bool) -> Any:
        from prefect.exceptions import ObjectNotFound

        self.asked.append((block_type_slug, name, include_secrets))
        if self.document is None:
            raise ObjectNotFound(http_exc=Exception("404"))
        return self.document


def _document(capabilities: list[str]) -> Any:
    from prefect.client.schemas.objects import BlockDocument, BlockSchema

    type_id = uuid.uuid4()
    schema = BlockSchema(id=uuid.uuid4(), checksum="x", fields={}, capabilities=capabilities, block_type_id=type_id)
    return BlockDocument(
        id=uuid.uuid4(), name="ops", data={}, block_schema_id=schema.id, block_type_id=type_id, block_schema=schema
    )


def test_the_block_id_is_read_by_slug_and_name_without_secrets() -> None:
    document = _document(["notify"])
    client = Blocks(document)
    body = NotificationProvider()._body(props(SPECS["failed-runs"]), client)
    assert body["actions"][0]["block_document_id"] == str(document.id) != UNRESOLVED_BLOCK
    assert client.asked == [("custom-webhook", "ops", False)]


@pytest.mark.parametrize(
    ("capabilities", "problem"),
    [
        (None, "no block 'custom-webhook/ops' in this workspace"),
        ([], "block 'custom-webhook/ops' cannot send notifications"),
    ],
    ids=["missing", "not-a-notification-block"],
)
def test_a_missing_or_wrong_block_is_one_line_naming_the_key_and_the_fix(
    capabilities: list[str] | None, problem: str
) -> None:
    document = None if capabilities is None else _document(capabilities)
    provider = NotificationProvider()
    provider._client = lambda _props: _Context(Blocks(document))  # type: ignore[method-assign]
    with pytest.raises(AutomationError) as raised:
        provider.create(props(SPECS["failed-runs"]))
    message = str(raised.value)
    assert "\n" not in message and API_KEY not in message
    assert f"prefect-fargate:prefectNotifyBlock: {problem}" in message
    assert "Fix: " in message and "pulumi config set prefect-fargate:prefectNotifyBlock" in message


class _Context:
    def __init__(self, client: Any) -> None:
        self.client = client

    def __enter__(self) -> Any:
        return self.client

    def __exit__(self, *_: object) -> None:
        pass


# -- on real local Prefect servers -------------------------------------------------------------------


def _save_webhook_block(api_url: str, name: str, url: str) -> uuid.UUID:
    """A custom-webhook notification block posting Slack's `{"text": ...}`, holding a secret token."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL, temporary_settings

    block = CustomWebhookNotificationBlock(
        name=name,
        url=url,
        json_data={"text": "{{subject}}\n{{body}}"},
        headers={"Authorization": "Bearer {{token}}"},
        secrets={"token": BLOCK_SECRET},
    )
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return block.save(name, overwrite=True)


def _named(server: Any, name: str) -> list[dict[str, Any]]:
    return [a for a in server.api("POST", "/automations/filter", {}) if a["name"] == name]


@pytest.mark.slow
def test_created_kept_block_remade_put_back_and_deleted(prefect_servers: Any) -> None:
    server, provider = prefect_servers[0], NotificationProvider()
    block_id = _save_webhook_block(server.url, "crud-ops", "http://127.0.0.1:9/hook")
    spec = failed_runs_notification(OWNER, "crud-pool", "custom-webhook/crud-ops")
    state = provider.create(props(spec, server.url)).outs
    automation_id = state["automation_id"]
    live = server.api("GET", f"/automations/{automation_id}")
    assert live["actions"][0]["block_document_id"] == str(block_id)
    assert provider.diff(automation_id, state, props(spec, server.url)).changes is False
    assert provider.create(props(spec, server.url)).id == automation_id  # adopted by name, not made twice

    server.api("DELETE", f"/block_documents/{block_id}")  # the block made again: a new id
    new_block_id = _save_webhook_block(server.url, "crud-ops", "http://127.0.0.1:9/hook")
    assert provider.diff(automation_id, state, props(spec, server.url)).changes is True
    state = provider.update(automation_id, state, props(spec, server.url)).outs
    assert server.api("GET", f"/automations/{automation_id}")["actions"][0]["block_document_id"] == str(new_block_id)
    assert provider.diff(automation_id, state, props(spec, server.url)).changes is False

    server.api("DELETE", f"/block_documents/{new_block_id}")  # gone: `pulumi up` says how to fix it
    with pytest.raises(AutomationError, match="prefectNotifyBlock: no block 'custom-webhook/crud-ops'"):
        provider.diff(automation_id, state, props(spec, server.url))

    provider.delete(automation_id, state)
    assert _named(server, spec["name"]) == []


def _wait_posted(webhook: WebhookRecorder, contains: str, timeout: float) -> str:
    def posted() -> str | None:
        return next((item["text"] for item in list(webhook.received) if contains in item.get("text", "")), None)

    return wait_for(posted, timeout, f"a notification containing {contains!r}", interval=0.5)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with local_cluster() as c:
        yield c


@pytest.mark.slow
def test_a_failing_run_of_this_pool_notifies_the_webhook_with_its_name_and_state(cluster: Cluster) -> None:
    """The server's actions service sends it (on by default; the harness turns off other loops only)."""
    from prefect.client.schemas.objects import StateType

    assert cluster.webhook is not None
    _save_webhook_block(cluster.api_url, "ops", cluster.webhook.url)
    spec = failed_runs_notification(OWNER, cluster.work_pool, BLOCK)
    created = NotificationProvider().create(props(spec, cluster.api_url))
    worker = cluster.start_worker()
    try:
        deployment = cluster.add_deployment("runtime_flows.py:raise_error", "raise-error")
        run_id = cluster.trigger(deployment)
        started = time.monotonic()
        run = cluster.wait_final([run_id], 180)[run_id]
        assert run.state.type == StateType.FAILED, cluster.run_logs(run_id)
        text = _wait_posted(cluster.webhook, run.name, 60)
        print(f"notified {time.monotonic() - started:.1f} s after the trigger:\n{text}")
    finally:
        worker.stop()
    assert f"Prefect flow run {run.name} ended Failed" in text
    assert f"Flow run raise-error/{run.name} of work pool {cluster.work_pool} ended Failed" in text
    assert "deliberate failure from the runtime tests" in text  # the state message
    everything = json.dumps(cluster.webhook.received)
    assert API_KEY not in everything and BLOCK_SECRET not in everything
    NotificationProvider().delete(created.id, created.outs)


@pytest.mark.slow
def test_on_a_real_server_a_stack_scaled_to_zero_has_no_no_worker_notification(
    prefect_servers: Any, warnings_seen: list[str]
) -> None:
    """What `pulumi up` makes on the server, through the program's own providers: at minWorkers 0 the failed-run
    notification only; at minWorkers 1 the "no worker" one too (which the long test below sees fire)."""
    server = prefect_servers[0]
    _save_webhook_block(server.url, "nightly-ops", "http://127.0.0.1:9/hook")
    made: dict[str, set[str]] = {}
    for pool, workers in (("nightly-pool", "0"), ("always-pool", "1")):
        config = {"prefectApiUrl": server.url, "workPool": pool, "prefectNotifyBlock": "custom-webhook/nightly-ops"}
        create_declared(run_program({**config, "minWorkers": workers}, secret_keys=[]), server.url)
        ours = [a for a in server.api("POST", "/automations/filter", {}) if f" {pool}" in a["name"]]
        made[pool] = {a["name"] for a in ours if ": notify when" in a["name"]}
        for automation in ours:
            server.api("DELETE", f"/automations/{automation['id']}")
    assert made == {
        "nightly-pool": {f"{OWNER}: notify when a flow run of nightly-pool fails or crashes"},
        "always-pool": {
            f"{OWNER}: notify when a flow run of always-pool fails or crashes",
            f"{OWNER}: notify when work pool always-pool has no worker",
        },
    }


@pytest.mark.long  # in CI's own `-m long` run: keeps the default run short
@pytest.mark.slow
def test_a_pool_whose_worker_stops_notifies_once_not_ready_for_the_window(prefect_servers: Any) -> None:
    """The foreman is on in these servers: a worker that stops heartbeating goes OFFLINE after three
    missed beats, the pool NOT_READY; the window (5 min in the stack) is made 10 s here."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server, webhook = prefect_servers[0], WebhookRecorder()
    try:
        _save_webhook_block(server.url, "pool-ops", webhook.url)
        spec = pool_not_ready_notification(OWNER, "lonely-pool", "custom-webhook/pool-ops", timedelta(seconds=10))
        created = NotificationProvider().create(props(spec, server.url))
        server.api("POST", "/work_pools/", {"name": "lonely-pool", "type": "process"})
        # The server's triggers service may not have loaded a just-made automation when the pool's first
        # not-ready event comes (seen once on a loaded machine): a worker beats again, the pool is READY
        # again, and the next silence is a new chance. The notification must still come after the window.
        for attempt in range(1, 4):
            with temporary_settings(updates={PREFECT_API_URL: server.url}):
                from prefect.client.orchestration import get_client

                with get_client(sync_client=True) as client:  # one heartbeat: READY, then silence
                    client.send_worker_heartbeat("lonely-pool", "w-1", heartbeat_interval_seconds=1)
            wait_for(lambda: server.api("GET", "/work_pools/lonely-pool")["status"] == "READY", 30, "pool READY")
            stopped = time.monotonic()
            try:
                text = _wait_posted(webhook, "lonely-pool", 90)
                break
            except TimeoutError:
                if attempt == 3:
                    raise
        took = time.monotonic() - stopped
        print(f"notified {took:.1f} s after the last heartbeat")
        assert "Prefect work pool lonely-pool has had no worker for 10 s" in text
        assert took >= 10
        assert BLOCK_SECRET not in json.dumps(webhook.received)
        NotificationProvider().delete(created.id, created.outs)
    finally:
        webhook.close()
