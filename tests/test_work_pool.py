"""The work pool's dynamic provider against real local Prefect servers on 127.0.0.1.

The servers (one without auth, one with basic auth, so that a wrong key is refused as Prefect Cloud
would refuse it) are the session's `prefect_servers` (tests/prefect_servers.py).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dill
import pytest
from conftest import (
    ACCOUNT,
    ORGANIZATION,
    OWNER,
    PROJECT,
    REGION,
    STACK,
    moto_ecs_network,
    name_values,
    record_aws_calls,
)
from prefect_servers import AUTH_STRING, Server, nowhere
from provider_host import ProviderHost, provider_host
from pulumi.dynamic.dynamic import serialize_provider

from components.job_templates import ecs_base_job_template, process_base_job_template
from components.prefect_api import owner_mark
from components.work_pool import WorkPoolError, WorkPoolProvider, description_for

pytestmark = pytest.mark.slow

KEY = "pnu_WorkPoolKeyThatMustNeverLeak42"


@pytest.fixture(scope="module")
def server(prefect_servers: tuple[Server, Server]) -> Server:
    return prefect_servers[0]


@pytest.fixture
def provider() -> WorkPoolProvider:
    """The provider as the Pulumi engine runs it: pickled into the state, then loaded elsewhere."""
    return dill.loads(base64.b64decode(serialize_provider(WorkPoolProvider())))  # noqa: S301 (our own)


def pool_error(match: str | None = None) -> Any:
    return pytest.raises(WorkPoolError, match=match)


def _props(server: Server, name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "api_url": server.url,
        "api_key": KEY,
        "name": name,
        "type": "process",
        "base_job_template": json.dumps(process_base_job_template(), sort_keys=True),
        "concurrency_limit": 5,
        "description": description_for(OWNER),
        "owner": OWNER,
        "pool_id": None,
        **overrides,
    }


def _live(server: Server, name: str) -> dict[str, Any]:
    return server.api("GET", f"/work_pools/{name}")


def _one_line_without_key(message: str) -> None:
    assert "\n" not in message and KEY not in message


def test_create_then_same_config_changes_nothing(server: Server, provider: WorkPoolProvider) -> None:
    props = _props(server, "idempotent")
    created = provider.create(props)
    live = _live(server, "idempotent")
    assert created.id == live["id"]
    assert live["type"] == "process"
    assert live["concurrency_limit"] == 5
    assert live["base_job_template"] == process_base_job_template()
    assert live["description"] == description_for(OWNER)
    state = created.outs
    # A second `pulumi up` with the same config: no change, so no update is made.
    diff = provider.diff(created.id, state, props)
    assert diff.changes is False and not diff.replaces
    # `pulumi refresh` reads back what is there, which is what the state holds.
    read = provider.read(created.id, state)
    assert read.id == created.id
    assert {k: read.outs[k] for k in ("type", "base_job_template", "concurrency_limit")} == {
        k: state[k] for k in ("type", "base_job_template", "concurrency_limit")
    }


def _edited_template(live: dict[str, Any]) -> dict[str, Any]:
    template = live["base_job_template"]
    template["variables"]["properties"]["command"]["default"] = "echo hacked"
    return {"base_job_template": template}


# Each managed field changed on its own in the UI, as a person would.
EDITS = {
    "template": _edited_template,
    "concurrency-limit": lambda live: {"concurrency_limit": 99},
    "description": lambda live: {"description": "my pool now"},
}


@pytest.mark.parametrize("field", EDITS)
def test_drift_in_one_field_alone_is_put_back(server: Server, provider: WorkPoolProvider, field: str) -> None:
    name = f"drifting-{field}"
    props = _props(server, name)
    created = provider.create(props)
    server.api("PATCH", f"/work_pools/{name}", EDITS[field](_live(server, name)))

    diff = provider.diff(created.id, created.outs, props)
    assert diff.changes is True and not diff.replaces
    provider.update(created.id, created.outs, props)
    live = _live(server, name)
    assert live["concurrency_limit"] == 5
    assert live["base_job_template"] == process_base_job_template()
    assert live["description"] == description_for(OWNER)
    assert provider.diff(created.id, created.outs, props).changes is False


def _with_server_additions(template: dict[str, Any]) -> dict[str, Any]:
    """What a server may add or normalise: keys of its own, and `None` defaults left out."""
    template = json.loads(json.dumps(template))
    template["x-server-field"] = {"added": True}
    template["job_configuration"]["x-extra"] = "{{ x_extra }}"
    template["variables"]["properties"]["x_extra"] = {"type": "string", "default": "server"}
    template["variables"]["properties"]["command"]["examples"] = ["python flow.py"]
    del template["variables"]["properties"]["name"]["default"]  # declared as null
    return template


def test_fields_the_server_adds_to_the_template_are_not_drift(server: Server, provider: WorkPoolProvider) -> None:
    props = _props(server, "normalised")
    created = provider.create(props)
    added = _with_server_additions(process_base_job_template())
    server.api("PATCH", "/work_pools/normalised", {"base_job_template": added})
    assert _live(server, "normalised")["base_job_template"] == added  # the server kept them all
    assert provider.diff(created.id, created.outs, props).changes is False

    added["variables"]["properties"]["stream_output"]["default"] = False  # but a declared value changed is
    server.api("PATCH", "/work_pools/normalised", {"base_job_template": added})
    assert provider.diff(created.id, created.outs, props).changes is True


def test_pool_deleted_by_hand_is_created_again(server: Server, provider: WorkPoolProvider) -> None:
    props = _props(server, "deleted-by-hand")
    created = provider.create(props)
    server.api("DELETE", "/work_pools/deleted-by-hand")
    assert provider.read(created.id, created.outs).id == ""  # refresh: gone
    assert provider.diff(created.id, created.outs, props).changes is True
    updated = provider.update(created.id, created.outs, props)
    assert _live(server, "deleted-by-hand")["id"] == updated.outs["pool_id"]


def test_config_change_updates_in_place_and_type_change_replaces(server: Server, provider: WorkPoolProvider) -> None:
    props = _props(server, "changing")
    created = provider.create(props)
    unlimited = {**props, "concurrency_limit": None}
    diff = provider.diff(created.id, created.outs, unlimited)
    assert diff.changes is True and not diff.replaces
    provider.update(created.id, created.outs, unlimited)
    assert _live(server, "changing")["concurrency_limit"] is None

    ecs = {**props, "type": "ecs", "base_job_template": json.dumps(ecs_base_job_template(**ECS_VALUES))}
    diff = provider.diff(created.id, created.outs, ecs)
    assert diff.replaces == ["type"] and diff.delete_before_replace is True


# -- two stacks, one workspace ----------------------------------------------------------------------


def test_a_pool_nobody_owns_is_adopted_with_a_warning(
    server: Server, provider: WorkPoolProvider, warnings_seen: list[str]
) -> None:
    """A worker started first creates its pool itself; the resource takes it over and marks it."""
    server.api("POST", "/work_pools/", {"name": "adopted", "type": "process"})
    created = provider.create(_props(server, "adopted"))
    live = _live(server, "adopted")
    assert created.id == live["id"] and live["concurrency_limit"] == 5
    assert live["description"] == description_for(OWNER)
    (warning,) = warnings_seen
    assert warning.startswith("Prefect work pool 'adopted': adopting an existing pool that no stack owns")
    assert OWNER in warning


def test_this_stacks_own_pool_is_adopted_silently(
    server: Server, provider: WorkPoolProvider, warnings_seen: list[str]
) -> None:
    """The stack's state was lost (or the pool imported): the pool is its own by the mark."""
    server.api("POST", "/work_pools/", {"name": "mine", "type": "process", "description": description_for(OWNER)})
    created = provider.create(_props(server, "mine"))
    assert created.id == _live(server, "mine")["id"]
    assert warnings_seen == []


def test_another_stacks_pool_is_refused_and_left_alone(server: Server, provider: WorkPoolProvider) -> None:
    dev = description_for(f"{PROJECT}/dev")
    pool = {"name": "shared", "type": "process", "description": dev, "concurrency_limit": 2}
    server.api("POST", "/work_pools/", pool)
    with pool_error() as raised:
        provider.create(_props(server, "shared"))
    message = str(raised.value)
    _one_line_without_key(message)
    assert message.startswith("Prefect work pool 'shared': creating it at http://127.0.0.1:")
    assert f"belongs to Pulumi stack {PROJECT}/dev, not {OWNER}" in message
    assert message.endswith(f"Fix: pulumi config set prefect-fargate:workPool shared-{STACK}")
    live = _live(server, "shared")
    assert (live["description"], live["concurrency_limit"]) == (dev, 2)


def test_a_pool_taken_by_another_stack_is_neither_updated_nor_deleted(
    server: Server, provider: WorkPoolProvider, warnings_seen: list[str]
) -> None:
    """Two stacks that shared a pool before it carried a mark: the one that marked it keeps it."""
    props = _props(server, "taken")
    created = provider.create(props)
    prod = description_for(f"{PROJECT}/prod")
    server.api("PATCH", "/work_pools/taken", {"description": prod, "concurrency_limit": 7})
    assert provider.diff(created.id, created.outs, props).changes is True  # the description drifted
    with pool_error(f"belongs to Pulumi stack {PROJECT}/prod"):
        provider.update(created.id, created.outs, props)
    provider.delete(created.id, created.outs)  # this stack's `pulumi destroy`
    live = _live(server, "taken")
    assert (live["description"], live["concurrency_limit"]) == (prod, 7)
    assert warnings_seen == [f"Prefect work pool 'taken': left in place: it belongs to Pulumi stack {PROJECT}/prod now"]


def test_a_renamed_stack_keeps_its_pool(server: Server, provider: WorkPoolProvider) -> None:
    """`pulumi stack rename`: the pool carries the old name until the update writes the new one."""
    props = _props(server, "renamed")
    created = provider.create(props)
    renamed = {**props, "owner": f"{PROJECT}/renamed", "description": description_for(f"{PROJECT}/renamed")}
    provider.update(created.id, created.outs, renamed)
    assert _live(server, "renamed")["description"] == description_for(f"{PROJECT}/renamed")


def _owned_by(server: Server, name: str, owner: str) -> dict[str, Any]:
    return _props(server, name, owner=owner, description=description_for(owner))


@pytest.mark.parametrize(
    "other",
    [
        owner_mark("another-org", PROJECT, STACK, ACCOUNT, REGION),
        owner_mark(ORGANIZATION, PROJECT, STACK, "210987654321", REGION),
    ],
    ids=["other-organization", "other-account"],
)
def test_same_stack_name_elsewhere_is_another_owner(server: Server, provider: WorkPoolProvider, other: str) -> None:
    """Two teams' `dev` stacks in one workspace: the mark tells them apart by organization (Pulumi Cloud)
    or by AWS account (self-managed backends all report one organization), so neither adopts the other's
    pool nor deletes it."""
    assert other != OWNER
    theirs = provider.create(_owned_by(server, f"dev-{other[:5]}", other))
    name = theirs.outs["name"]
    with pool_error(f"belongs to Pulumi stack {other}, not {OWNER}"):
        provider.create(_props(server, name))
    provider.delete("id", _props(server, name))  # our `destroy`, had it the pool in its state
    assert _live(server, name)["description"] == description_for(other)


def test_a_pool_with_the_older_mark_is_kept_by_its_own_stack(server: Server, provider: WorkPoolProvider) -> None:
    """A stack made before the mark named its organization and account: its state holds the old
    `<project>/<stack>`, so its next `pulumi up` updates the pool and writes the new mark."""
    legacy = f"{PROJECT}/{STACK}"
    created = provider.create(_owned_by(server, "legacy", legacy))
    assert _live(server, "legacy")["description"] == description_for(legacy)
    provider.update(created.id, created.outs, _props(server, "legacy"))
    assert _live(server, "legacy")["description"] == description_for(OWNER)


def test_existing_pool_of_another_type_is_refused(server: Server, provider: WorkPoolProvider) -> None:
    server.api("POST", "/work_pools/", {"name": "other-type", "type": "kubernetes"})
    with pool_error("already exists with type 'kubernetes', not 'process'"):
        provider.create(_props(server, "other-type"))


def test_delete_removes_the_pool_and_tolerates_it_gone(server: Server, provider: WorkPoolProvider) -> None:
    props = _props(server, "deleted")
    created = provider.create(props)
    provider.delete(created.id, created.outs)
    pools = [pool["name"] for pool in server.api("POST", "/work_pools/filter", {})]
    assert "deleted" not in pools
    provider.delete(created.id, created.outs)  # a second destroy after a manual delete is fine


def test_ecs_template_is_accepted_by_the_server(server: Server, provider: WorkPoolProvider) -> None:
    template = ecs_base_job_template(**ECS_VALUES)
    props = _props(server, "ecs-pool", type="ecs", base_job_template=json.dumps(template))
    created = provider.create(props)
    assert _live(server, "ecs-pool")["base_job_template"] == template
    assert provider.diff(created.id, created.outs, props).changes is False


def test_bad_template_is_rejected_with_a_clear_error(server: Server, provider: WorkPoolProvider) -> None:
    template = process_base_job_template()
    template["job_configuration"]["command"] = "{{ no_such_variable }}"
    with pool_error() as raised:
        provider.create(_props(server, "bad-template", base_job_template=json.dumps(template)))
    message = str(raised.value)
    assert message.startswith("Prefect work pool 'bad-template': creating it at http://127.0.0.1:")
    assert "HTTP 422" in message and "no_such_variable" in message
    _one_line_without_key(message)


def test_wrong_key_is_refused_without_showing_it(
    prefect_servers: tuple[Server, Server], provider: WorkPoolProvider
) -> None:
    _, auth_server = prefect_servers
    with pool_error() as raised:
        provider.create(_props(auth_server, "refused"))
    message = str(raised.value)
    assert "refused the API key (HTTP 401)" in message
    assert "pulumi config set --secret prefect-fargate:prefectApiKey" in message
    _one_line_without_key(message)
    with pool_error("refused the API key"):  # a refusal is no outage: `diff` fails too
        provider.diff("id", _props(auth_server, "refused"), _props(auth_server, "refused"))


def test_auth_string_manages_pool_and_automations_and_a_wrong_one_gets_the_fix(
    prefect_servers: tuple[Server, Server], provider: WorkPoolProvider
) -> None:
    """prefectApiAuthString: both providers authenticate with it; a wrong one fails `pulumi up` in one line
    that names the config key, without the string (nor its base64, as basic auth sends it)."""
    from components.run_automations import AutomationProvider, automation_props, stuck_runs_automation

    _, auth_server = prefect_servers
    props = {key: value for key, value in _props(auth_server, "auth-string").items() if key != "api_key"}
    props["auth_string"] = AUTH_STRING
    created = provider.create(props)
    assert provider.diff(created.id, created.outs, props).changes is False
    automations = AutomationProvider()
    automation = automations.create(
        automation_props(
            stuck_runs_automation(OWNER, "auth-pool", timedelta(minutes=15)),
            auth_server.url,
            {"auth_string": AUTH_STRING},
        )
    )
    automations.delete(automation.id, automation.outs)

    wrong = "admin:wrong-password"
    refused = {**props, "auth_string": wrong}
    for operation in (lambda: provider.create(refused), lambda: provider.diff(created.id, refused, refused)):
        with pool_error() as raised:
            operation()
        message = str(raised.value)
        assert "refused the credential (HTTP 401)" in message, message
        assert "pulumi config set --secret prefect-fargate:prefectApiAuthString '<user>:<password>'" in message
        assert "\n" not in message and wrong not in message and base64.b64encode(wrong.encode()).decode() not in message
    provider.delete(created.id, created.outs)


def test_unreachable_url_is_one_clear_line_for_read_and_create(provider: WorkPoolProvider) -> None:
    gone = nowhere()
    started = time.monotonic()
    for operation in (lambda: provider.read("id", _props(gone, "nowhere")), lambda: provider.create(_props(gone, "x"))):
        with pool_error() as raised:
            operation()
        message = str(raised.value)
        assert "cannot reach the Prefect API (ConnectError" in message and gone.url in message
        _one_line_without_key(message)
    assert time.monotonic() - started < 30


def test_the_key_in_a_message_would_be_masked(provider: WorkPoolProvider) -> None:
    """Even an error that quotes the key (say, a server echoing a header) is masked."""
    echo = Server(nowhere().url.replace("/api", f"/{KEY}/api"))
    with pool_error() as raised:
        provider.delete("id", _props(echo, "echo"))
    assert KEY not in str(raised.value) and "***" in str(raised.value)


ECS_VALUES: dict[str, Any] = {
    "cluster_arn": "arn:aws:ecs:us-east-1:123456789012:cluster/prefect",
    "vpc_id": "vpc-0123456789abcdef0",
    "subnet_ids": ["subnet-0123456789abcdef0"],
    "security_group_ids": ["sg-0123456789abcdef0"],
    "assign_public_ip": True,
    "execution_role_arn": "arn:aws:iam::123456789012:role/execution",
    "task_role_arn": "arn:aws:iam::123456789012:role/flow-run",
    "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent@sha256:" + "a" * 64,
    "log_group_name": "/prefect-fargate/test/prefect",
    "region": "us-east-1",
    "api_key_value_from": "arn:aws:secretsmanager:us-east-1:123456789012:secret:key-AbC123:::v1",
    "cpu": 1024,
    "memory": 2048,
    "cpu_architecture": "X86_64",
    "flow_run_env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"},
    "family_prefix": "prefect-fargate-test-flow-run",
}


# -- through Pulumi's own dynamic provider host, as `pulumi up` drives it ---------------------------

URN = "urn:pulumi:test::prefect-fargate::pulumi-python:dynamic/prefect:WorkPool::engine"


@pytest.fixture
def host() -> Iterator[ProviderHost]:
    """`python -m pulumi.dynamic` in the project directory (what the engine starts)."""
    with provider_host() as running:
        yield running


def _news(server: Server, name: str) -> dict[str, Any]:
    news = {**_props(server, name), "__provider": serialize_provider(WorkPoolProvider())}
    del news["pool_id"]
    return news


def test_engine_protocol_create_diff_update_delete(server: Server, host: ProviderHost) -> None:
    """Create, a no-op diff, drift found and put back, and delete, over the engine's gRPC calls."""
    news = _news(server, "engine")
    timings = {}

    started = time.monotonic()
    id_, state = host.create(URN, news)
    timings["create"] = time.monotonic() - started
    assert id_ == _live(server, "engine")["id"] == state["pool_id"]

    started = time.monotonic()
    assert host.changes(id_, URN, state, news) is False
    timings["diff"] = time.monotonic() - started

    server.api("PATCH", "/work_pools/engine", {"concurrency_limit": 1})
    assert host.changes(id_, URN, state, news) is True
    started = time.monotonic()
    host.update(id_, URN, state, news)
    timings["update"] = time.monotonic() - started
    assert _live(server, "engine")["concurrency_limit"] == 5

    started = time.monotonic()
    host.delete(id_, URN, state)
    timings["delete"] = time.monotonic() - started
    assert "engine" not in [pool["name"] for pool in server.api("POST", "/work_pools/filter", {})]
    print("engine calls (s):", {k: round(v, 3) for k, v in timings.items()})


def test_engine_protocol_error_is_one_message_without_the_key(
    prefect_servers: tuple[Server, Server], host: ProviderHost
) -> None:
    import grpc

    with pytest.raises(grpc.RpcError) as raised:
        host.create("urn:pulumi:t::p::x::refused", _news(prefect_servers[1], "refused"))
    details = raised.value.details()  # what `pulumi up` prints
    assert KEY not in details
    last_line = details.strip().splitlines()[-1]
    assert last_line.startswith("components.work_pool.WorkPoolError: Prefect work pool 'refused': creating it at")
    assert "refused the API key (HTTP 401)" in last_line
    assert "During handling" not in details  # no chained httpx traceback


def test_prefect_outage_leaves_diff_with_a_warning_and_update_failing_clearly(
    server: Server, host: ProviderHost
) -> None:
    """The server stops: a preview/up that changes only AWS must go on; a pool change cannot."""
    import grpc

    news = _news(server, "outage")
    id_, state = host.create(URN, news)
    server.stop()
    try:
        started = time.monotonic()
        assert host.changes(id_, URN, state, news) is False  # no drift known
        took = time.monotonic() - started
        warning = host.stderr().strip().splitlines()[-1]
        assert warning.startswith("warning: Prefect work pool 'outage': not checked for drift: cannot reach")
        assert server.url in warning and "ConnectError" in warning and KEY not in warning
        assert took < 10, took
        with pytest.raises(grpc.RpcError) as raised:
            host.update(id_, URN, state, {**news, "concurrency_limit": 6})
        last_line = raised.value.details().strip().splitlines()[-1]
        assert "updating it at" in last_line and "cannot reach the Prefect API" in last_line
    finally:
        server.start()
        server.wait_healthy()
    assert host.changes(id_, URN, state, news) is False  # and with Prefect back, drift is checked again
    server.api("PATCH", "/work_pools/outage", {"concurrency_limit": 1})
    assert host.changes(id_, URN, state, news) is True


# -- the pool as the server keeps it, read by prefect-aws's worker for a deployment's flow run ------


def test_worker_submits_a_deployments_run_from_the_pool_on_the_server(
    server: Server, provider: WorkPoolProvider, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pool made by the provider -> deployment with its own size -> flow run -> the worker's AWS calls.

    AWS is moto's (in-process; RunTask answered after botocore checked its shape); Prefect is the
    real local server. The deployment's job variables override the pool's defaults, the rest is the
    stack's.
    """
    import asyncio
    import logging

    import boto3
    from prefect.client.orchestration import PrefectClient
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
    from prefect_aws.workers.ecs_worker import ECSJobConfiguration, ECSWorker

    ecs = boto3.client("ecs")
    vpc, subnet, group, cluster = moto_ecs_network()
    values = {**ECS_VALUES, "cluster_arn": cluster, "vpc_id": vpc, "subnet_ids": [subnet]}
    values["security_group_ids"] = [group]
    props = _props(server, "ecs-end-to-end", type="ecs", base_job_template=json.dumps(ecs_base_job_template(**values)))
    provider.create(props)

    calls = record_aws_calls(monkeypatch)

    async def submit() -> None:
        async with PrefectClient(server.url) as client:
            flow_id = await client.create_flow_from_name("sample-flow")
            deployment_id = await client.create_deployment(
                flow_id=flow_id,
                name="big",
                work_pool_name="ecs-end-to-end",
                job_variables={"cpu": 4096, "memory": 16384},
            )
            flow_run = await client.create_flow_run_from_deployment(deployment_id)
            pool = await client.read_work_pool("ecs-end-to-end")
            configuration = await ECSJobConfiguration.resolve_for_flow_run(
                flow_run, client=client, work_pool=pool, worker_name="test-worker"
            )
            await asyncio.to_thread(
                ECSWorker(work_pool_name="ecs-end-to-end")._prepare_and_create_task,
                logging.getLogger("test"),
                configuration.aws_credentials.get_client("ecs"),
                configuration,
                flow_run,
            )

    with temporary_settings({PREFECT_API_URL: server.url, PREFECT_API_KEY: KEY}):
        asyncio.run(submit())
    monkeypatch.undo()

    (registered,) = ecs.list_task_definitions()["taskDefinitionArns"]
    task_definition = ecs.describe_task_definition(taskDefinition=registered)["taskDefinition"]
    (container,) = task_definition["containerDefinitions"]
    assert (task_definition["cpu"], task_definition["memory"]) == ("4096", "16384")  # the deployment's size
    assert container["image"] == ECS_VALUES["image"]
    assert container["secrets"] == [{"name": "PREFECT_API_KEY", "valueFrom": ECS_VALUES["api_key_value_from"]}]
    (run_task,) = [params for _, operation, params in calls if operation == "RunTask"]
    assert run_task["cluster"] == cluster
    assert run_task["overrides"]["taskRoleArn"] == ECS_VALUES["task_role_arn"]
    assert run_task["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == [subnet]
    environment = name_values(run_task["overrides"]["containerOverrides"][0]["environment"])
    assert environment["PREFECT_API_URL"] == server.url and "PREFECT_API_KEY" not in environment
    assert KEY not in json.dumps([params for _, _, params in calls], default=str)


def test_destroy_after_a_revoked_credential_uses_the_current_one_or_says_how_out(
    prefect_servers: tuple[Server, Server],
    provider: WorkPoolProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`read`/`delete` get only the state's credential. Rotated and revoked before `pulumi up`: refresh and
    destroy fail with the way out, and work with the current credential in the environment."""
    _, auth_server = prefect_servers
    props = {key: value for key, value in _props(auth_server, "rotated").items() if key != "api_key"}
    created = provider.create({**props, "auth_string": AUTH_STRING})
    stale = {**created.outs, "auth_string": "admin:revoked-password"}  # what the state still holds

    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    with pool_error(r"\(HTTP 401\)") as raised:
        provider.delete(created.id, stale)
    message = str(raised.value)
    assert "current one in PREFECT_API_AUTH_STRING" in message and "pulumi state delete <urn>" in message
    assert "revoked-password" not in message
    assert provider.read(created.id, created.outs).id == created.id  # still there, and still in the state

    monkeypatch.setenv("PREFECT_API_AUTH_STRING", AUTH_STRING)  # PREFECT_API_AUTH_STRING=... pulumi destroy
    assert provider.read(created.id, stale).id == created.id  # `pulumi refresh`
    provider.delete(created.id, stale)
    assert provider.read(created.id, created.outs).id == ""  # gone

    # The automations' provider shares the way out (PrefectApiProvider._call_stored).
    from components.run_automations import AutomationProvider, automation_props, stuck_runs_automation

    automations = AutomationProvider()
    spec = stuck_runs_automation(OWNER, "revoked-pool", timedelta(minutes=15))
    made = automations.create(automation_props(spec, auth_server.url, {"auth_string": AUTH_STRING}))
    automations.delete(made.id, {**made.outs, "auth_string": "admin:revoked-password"})
    assert automations.read(made.id, made.outs).id == ""


def test_destroy_with_prefect_out_of_reach_names_the_state_command(provider: WorkPoolProvider) -> None:
    props = _props(nowhere(), "unreachable")
    with pool_error("cannot reach the Prefect API") as raised:
        provider.delete("id", props)
    assert "`pulumi state delete <urn>`" in str(raised.value)
