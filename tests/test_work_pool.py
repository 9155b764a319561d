"""The work pool's dynamic provider against real local Prefect servers on 127.0.0.1.

One server without auth (as a self-hosted server often runs) and one with basic auth, so that a
wrong key is refused as Prefect Cloud would refuse it. Both start together once per module.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dill
import pytest
from conftest import moto_ecs_network, name_values, record_aws_calls
from pulumi.dynamic.dynamic import serialize_provider

from components.job_templates import ecs_base_job_template, process_base_job_template
from components.work_pool import DESCRIPTION, WorkPoolProvider

pytestmark = pytest.mark.slow

KEY = "pnu_WorkPoolKeyThatMustNeverLeak42"
BIN = Path(sys.executable).parent


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    home: tempfile.TemporaryDirectory[str]
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(auth_string: str | None = None) -> Server:
    home = tempfile.TemporaryDirectory(prefix="prefect-home-")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=home.name, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    if auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
    log = Path(home.name) / "server.log"
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Server(f"http://127.0.0.1:{port}/api", process, home, log)


def _wait_healthy(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"Prefect server exited: {server.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"Prefect server not healthy in {timeout} s: {server.log.read_text()[-2000:]}")


def _stop(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    server.home.cleanup()


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Server, Server]]:
    """(open server, basic-auth server), started in parallel."""
    started = time.monotonic()
    open_server, auth_server = _start(), _start(auth_string="admin:right-password")
    try:
        _wait_healthy(open_server)
        _wait_healthy(auth_server)
        print(f"two Prefect servers healthy in {time.monotonic() - started:.1f} s")
        yield open_server, auth_server
    finally:
        _stop(open_server)
        _stop(auth_server)


@pytest.fixture(scope="module")
def server(servers: tuple[Server, Server]) -> Server:
    return servers[0]


@pytest.fixture
def provider() -> WorkPoolProvider:
    """The provider as the Pulumi engine runs it: pickled into the state, then loaded elsewhere."""
    return dill.loads(base64.b64decode(serialize_provider(WorkPoolProvider())))  # noqa: S301 (our own)


@contextlib.contextmanager
def pool_error() -> Iterator[pytest.ExceptionInfo[Exception]]:
    """The provider's WorkPoolError (a copy of the class, as the provider was unpickled)."""
    with pytest.raises(Exception) as raised:
        yield raised
    assert type(raised.value).__name__ == "WorkPoolError"
    assert "\n" not in str(raised.value)
    assert KEY not in str(raised.value)


def _props(server: Server, name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "api_url": server.url,
        "api_key": KEY,
        "name": name,
        "type": "process",
        "base_job_template": json.dumps(process_base_job_template(), sort_keys=True),
        "concurrency_limit": 5,
        "description": DESCRIPTION,
        "pool_id": None,
        **overrides,
    }


def _api(server: Server, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Talk to the server directly, as a user in the UI would."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(server.url) as client:
        response = client.request(method, path, json=body)
        return response.json() if response.content else None


def _live(server: Server, name: str) -> dict[str, Any]:
    return _api(server, "GET", f"/work_pools/{name}")


def test_create_then_same_config_changes_nothing(server: Server, provider: WorkPoolProvider) -> None:
    props = _props(server, "idempotent")
    created = provider.create(props)
    live = _live(server, "idempotent")
    assert created.id == live["id"]
    assert live["type"] == "process"
    assert live["concurrency_limit"] == 5
    assert live["base_job_template"] == process_base_job_template()
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


def test_drift_made_in_the_ui_is_put_back(server: Server, provider: WorkPoolProvider) -> None:
    props = _props(server, "drifting")
    created = provider.create(props)
    template = _live(server, "drifting")["base_job_template"]
    template["variables"]["properties"]["command"]["default"] = "echo hacked"
    _api(server, "PATCH", "/work_pools/drifting", {"concurrency_limit": 99, "base_job_template": template})

    diff = provider.diff(created.id, created.outs, props)
    assert diff.changes is True and not diff.replaces
    provider.update(created.id, created.outs, props)
    live = _live(server, "drifting")
    assert live["concurrency_limit"] == 5
    assert live["base_job_template"] == process_base_job_template()
    assert provider.diff(created.id, created.outs, props).changes is False


def test_pool_deleted_by_hand_is_created_again(server: Server, provider: WorkPoolProvider) -> None:
    props = _props(server, "deleted-by-hand")
    created = provider.create(props)
    _api(server, "DELETE", "/work_pools/deleted-by-hand")
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


def test_existing_pool_of_the_same_type_is_adopted(server: Server, provider: WorkPoolProvider) -> None:
    """A worker started first creates its pool itself; the resource takes it over."""
    _api(server, "POST", "/work_pools/", {"name": "adopted", "type": "process"})
    created = provider.create(_props(server, "adopted"))
    assert _live(server, "adopted")["concurrency_limit"] == 5
    assert created.id == _live(server, "adopted")["id"]


def test_existing_pool_of_another_type_is_refused(server: Server, provider: WorkPoolProvider) -> None:
    _api(server, "POST", "/work_pools/", {"name": "other-type", "type": "kubernetes"})
    with pool_error() as raised:
        provider.create(_props(server, "other-type"))
    assert "already exists with type 'kubernetes', not 'process'" in str(raised.value)


def test_delete_removes_the_pool_and_tolerates_it_gone(server: Server, provider: WorkPoolProvider) -> None:
    props = _props(server, "deleted")
    created = provider.create(props)
    provider.delete(created.id, created.outs)
    pools = [pool["name"] for pool in _api(server, "POST", "/work_pools/filter", {})]
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
    assert KEY not in message and "\n" not in message


def test_wrong_key_is_refused_without_showing_it(servers: tuple[Server, Server], provider: WorkPoolProvider) -> None:
    _, auth_server = servers
    with pool_error() as raised:
        provider.create(_props(auth_server, "refused"))
    message = str(raised.value)
    assert "refused the API key (HTTP 401)" in message
    assert "pulumi config set --secret prefect-fargate:prefectApiKey" in message
    assert KEY not in message


def test_unreachable_url_is_one_clear_line(provider: WorkPoolProvider) -> None:
    url = f"http://127.0.0.1:{_free_port()}/api"
    started = time.monotonic()
    with pool_error() as raised:
        provider.read("id", {**_props(Server(url, None, None, Path()), "nowhere")})  # type: ignore[arg-type]
    message = str(raised.value)
    assert "cannot reach the Prefect API (ConnectError" in message and url in message
    assert KEY not in message
    assert time.monotonic() - started < 30


def test_the_key_in_a_message_would_be_masked(provider: WorkPoolProvider) -> None:
    """Even an error that quotes the key (say, a server echoing a header) is masked."""
    url = f"http://127.0.0.1:{_free_port()}/{KEY}/api"
    with pool_error() as raised:
        provider.delete("id", _props(Server(url, None, None, Path()), "echo"))  # type: ignore[arg-type]
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


@pytest.fixture
def provider_host(tmp_path: Path) -> Iterator[Any]:
    """`python -m pulumi.dynamic` (what the engine starts), in a directory without this project."""
    import grpc
    from pulumi.runtime import proto
    from pulumi.runtime.proto import provider_pb2_grpc

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    host = subprocess.Popen(
        [sys.executable, "-m", "pulumi.dynamic"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        port = int(host.stdout.readline())  # type: ignore[union-attr]
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = provider_pb2_grpc.ResourceProviderStub(channel)
        stub.Configure(proto.ConfigureRequest())
        yield stub
        channel.close()
    finally:
        host.send_signal(signal.SIGTERM)
        host.wait(timeout=10)


def test_engine_protocol_create_diff_update_delete(server: Server, provider_host: Any) -> None:
    """Create, a no-op diff, drift found and put back, and delete, over the engine's gRPC calls."""
    from pulumi.runtime import proto, rpc
    from pulumi.runtime.sync_await import _sync_await

    def struct(values: dict[str, Any]) -> Any:
        return _sync_await(rpc.serialize_properties(values, {}))

    urn = "urn:pulumi:test::prefect-fargate::pulumi-python:dynamic/prefect:WorkPool::engine"
    news = {**_props(server, "engine"), "__provider": serialize_provider(WorkPoolProvider())}
    del news["pool_id"]
    timings = {}

    started = time.monotonic()
    created = provider_host.Create(proto.CreateRequest(urn=urn, properties=struct(news)))
    timings["create"] = time.monotonic() - started
    state = rpc.deserialize_properties(created.properties)
    assert created.id == _live(server, "engine")["id"] == state["pool_id"]

    started = time.monotonic()
    diff = provider_host.Diff(proto.DiffRequest(id=created.id, urn=urn, olds=struct(state), news=struct(news)))
    timings["diff"] = time.monotonic() - started
    assert diff.changes == proto.DiffResponse.DIFF_NONE

    _api(server, "PATCH", "/work_pools/engine", {"concurrency_limit": 1})
    diff = provider_host.Diff(proto.DiffRequest(id=created.id, urn=urn, olds=struct(state), news=struct(news)))
    assert diff.changes == proto.DiffResponse.DIFF_SOME and not diff.replaces
    started = time.monotonic()
    provider_host.Update(proto.UpdateRequest(id=created.id, urn=urn, olds=struct(state), news=struct(news)))
    timings["update"] = time.monotonic() - started
    assert _live(server, "engine")["concurrency_limit"] == 5

    started = time.monotonic()
    provider_host.Delete(proto.DeleteRequest(id=created.id, urn=urn, properties=struct(state)))
    timings["delete"] = time.monotonic() - started
    assert "engine" not in [pool["name"] for pool in _api(server, "POST", "/work_pools/filter", {})]
    print("engine calls (s):", {k: round(v, 3) for k, v in timings.items()})


def test_engine_protocol_error_is_one_message_without_the_key(
    servers: tuple[Server, Server], provider_host: Any
) -> None:
    import grpc
    from pulumi.runtime import proto, rpc
    from pulumi.runtime.sync_await import _sync_await

    news = {**_props(servers[1], "refused"), "__provider": serialize_provider(WorkPoolProvider())}
    del news["pool_id"]
    with pytest.raises(grpc.RpcError) as raised:
        provider_host.Create(
            proto.CreateRequest(
                urn="urn:pulumi:t::p::x::refused", properties=_sync_await(rpc.serialize_properties(news, {}))
            )
        )
    details = raised.value.details()  # what `pulumi up` prints
    assert KEY not in details
    last_line = details.strip().splitlines()[-1]
    assert last_line.startswith("WorkPoolError: Prefect work pool 'refused': creating it at http://127.0.0.1:")
    assert "refused the API key (HTTP 401)" in last_line
    assert "During handling" not in details  # no chained httpx traceback


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
