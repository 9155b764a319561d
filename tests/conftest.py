"""Shared test fixtures. The Pulumi mocks themselves live in `devtools/mocks.py` (the config check and
the demo use them too); they are re-exported here, where the tests have always imported them from.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.mocks import (
    ACCOUNT,
    ACCOUNT_ID,
    API_KEY,
    BASE_CONFIG,
    INVOKES,
    ORGANIZATION,
    OWNER,
    PROJECT,
    REGION,
    ROOT,
    SQS_URL,
    STACK,
    WORKSPACE_ID,
    RecordingMocks,
    Resource,
    Run,
    load_stack_config,
    name_values,
    resolve,
    run_program,
    run_pulumi,
    set_stack_config,
    unwrap,
)

__all__ = [
    "ACCOUNT",
    "ACCOUNT_ID",
    "API_KEY",
    "BASE_CONFIG",
    "INVOKES",
    "ORGANIZATION",
    "OWNER",
    "PROJECT",
    "REGION",
    "ROOT",
    "SQS_URL",
    "STACK",
    "WORKSPACE_ID",
    "RecordingMocks",
    "Resource",
    "Run",
    "load_stack_config",
    "name_values",
    "resolve",
    "run_program",
    "run_pulumi",
    "set_stack_config",
    "unwrap",
]


@pytest.fixture(autouse=True)
def no_region_from_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The program reads the region as the AWS provider does, from AWS_REGION/AWS_DEFAULT_REGION when aws:region
    is not set (components/config/region.py): a test gives it in its config, or sets the variable itself."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def warnings_seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the program or a provider warns (`pulumi.log.warn`: the provider host prints it, the CLI shows it)."""
    seen: list[str] = []
    monkeypatch.setattr("pulumi.log.warn", lambda message, *_, **__: seen.append(message))
    return seen


@pytest.fixture(scope="session")
def default_run() -> Run:
    """The program with the minimal config a README user sets."""
    return run_program()


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a nested structure, for leak checks."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings_in(v)


# -- AWS through moto, for the ECS worker's calls ------------------------------------------------


def put_metric_alarm_request(
    alarm: dict[str, Any], actions: list[str], ok_actions: list[str] | None = None
) -> dict[str, Any]:
    """A registered `aws:cloudwatch/metricAlarm`'s inputs as CloudWatch's PutMetricAlarm takes them (botocore
    checks the shape, moto stores it)."""
    request = {
        "AlarmName": alarm["name"],
        "Namespace": alarm["namespace"],
        "MetricName": alarm["metricName"],
        "Dimensions": [{"Name": k, "Value": v} for k, v in alarm["dimensions"].items()],
        "Statistic": alarm["statistic"],
        "ComparisonOperator": alarm["comparisonOperator"],
        "Threshold": alarm["threshold"],
        "Period": int(alarm["period"]),
        "EvaluationPeriods": int(alarm["evaluationPeriods"]),
        "TreatMissingData": alarm["treatMissingData"],
        "AlarmActions": actions,
    }
    if alarm.get("alarmDescription") is not None:
        request["AlarmDescription"] = alarm["alarmDescription"]
    if alarm.get("datapointsToAlarm") is not None:
        request["DatapointsToAlarm"] = int(alarm["datapointsToAlarm"])
    if ok_actions is not None:
        request["OKActions"] = ok_actions
    return request


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and moto for every boto3 client made in the test; no real endpoint or profile."""
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def controller_env(**overrides: str) -> dict[str, str]:
    """The stack controller function's environment as StackController sets it for a default `process` stack with
    its one fixed worker (the backlog job's settings: components/worker_scaling.py, controller_environment), with
    `overrides` (the API URL, the pool, ...) on top: the input of tests that run the handler."""
    return {
        "PREFECT_API_URL": "https://prefect.example/api",
        "WORK_POOL": "fargate-pool",
        "WORK_POOL_TYPE": "process",
        "CLUSTER_ARN": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prefect-worker-cluster",
        "SILENCE_SECONDS": "900",
        "STUCK_SECONDS": "900",
        "RETRY_CRASHED_RUNS": "true",
        "BACKLOG_NAMESPACE": "prefect-fargate-test",
        "BACKLOG_RUN_LIMIT": "4",
        "BACKLOG_MIN_WORKERS": "1",
        "BACKLOG_MAX_WORKERS": "1",
        "BACKLOG_LEAD_MINUTES": "3",
        "BACKLOG_QUIET_MINUTES": "10",
        **overrides,
    }


def topic_with_inbox() -> tuple[str, str]:
    """The alert topic as the stack makes it (alias/aws/sns) in moto, with an SQS queue subscribed to read what
    arrives: (topic ARN, queue URL)."""
    import boto3

    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    arn = sns.create_topic(Name="alerts", Attributes={"KmsMasterKeyId": "alias/aws/sns"})["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return arn, queue


def inbox(queue: str) -> list[dict[str, Any]]:
    """Every message delivered to the queue so far, taken off it (SNS's envelope: Subject, and Message, the JSON
    for non-email protocols)."""
    import boto3

    sqs, found = boto3.client("sqs"), []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        found += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(
            QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        )
    return found


def deployments_in_new_pools(client: Any, flow: str, pool_type: str, *pools: str) -> dict[str, uuid.UUID]:
    """Each pool made (`process` or `ecs`) with one deployment of `flow`, named after its pool: a test's own pools on
    the session's shared server. Returns pool -> deployment id."""
    from prefect.client.schemas.actions import WorkPoolCreate

    flow_id, deployments = client.create_flow_from_name(flow), {}
    for pool in pools:
        client.create_work_pool(WorkPoolCreate(name=pool, type=pool_type))
        deployments[pool] = client.create_deployment(flow_id=flow_id, name=pool, work_pool_name=pool)
    return deployments


def modules_imported_in_lambda(archive: Any, workdir: Path, module: str, watched: tuple[str, ...]) -> list[str]:
    """Zip `archive` and extract it as Lambda does, import `module` in an isolated interpreter that sees only the
    extracted folder and the standard library (-I -S: no site-packages, no PYTHONPATH), and return which modules
    of the `watched` packages that import loaded. Asserts the import succeeds and leaves `module.handler` callable."""
    import subprocess
    import sys
    import zipfile

    with zipfile.ZipFile(workdir / "code.zip", "w") as zipped:
        for name, asset in archive.assets.items():
            zipped.write(asset.path, name)
    with zipfile.ZipFile(workdir / "code.zip") as zipped:
        zipped.extractall(workdir / "task")
    probe = (
        "import importlib, json, sys; sys.path[:] = [p for p in sys.path if 'site-packages' not in p];"
        f"sys.path.insert(0, '.'); h = importlib.import_module({module!r}); assert callable(h.handler);"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {watched!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], cwd=workdir / "task", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def moto_ecs_network() -> tuple[str, str, str, str]:
    """A VPC, a subnet, a security group and an ECS cluster in moto: (vpc, subnet, group, cluster ARN)."""
    import boto3

    ec2, ecs = boto3.client("ec2"), boto3.client("ecs")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="egress", Description="egress only", VpcId=vpc)["GroupId"]
    cluster = ecs.create_cluster(clusterName="prefect-worker-cluster")["cluster"]["clusterArn"]
    return vpc, subnet, group, cluster


def _answer_run_task(params: dict[str, Any], model: Any, **_: Any) -> tuple[Any, dict[str, Any]]:
    """Called after botocore validated the request against RunTask's shape."""
    from botocore.awsrequest import AWSResponse

    cluster = json.loads(params["body"])["cluster"]
    task = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster.rsplit('/', 1)[1]}/{uuid.uuid4().hex}"
    return AWSResponse("https://ecs.local", 200, {}, None), {
        "tasks": [{"taskArn": task, "clusterArn": cluster}],
        "failures": [],
    }


@pytest.fixture
def requests_sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, bytes | None]]:
    """Every HTTP request the controller sends (it sends them all through urllib.request.urlopen): method, URL,
    Authorization header, body."""
    sent: list[tuple[str, str, str, bytes | None]] = []
    real = urllib.request.urlopen

    def recording(request: urllib.request.Request, *args: Any, **kwargs: Any) -> Any:
        body = request.data if isinstance(request.data, bytes) else None
        sent.append((request.get_method(), request.full_url, request.get_header("Authorization") or "", body))
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", recording)
    return sent


def record_aws_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """Every boto3 call from now on, as (service, operation, params); RunTask is checked against its
    shape by botocore and then answered here (moto cannot size a Fargate task)."""
    import botocore.client

    calls: list[tuple[str, str, dict[str, Any]]] = []
    make_api_call = botocore.client.BaseClient._make_api_call

    def recording(client: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append((client.meta.service_model.signing_name, operation, params))
        if operation == "RunTask":
            client.meta.events.register_first("before-call.ecs.RunTask", _answer_run_task)
        return make_api_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    return calls


# -- real Prefect API servers, for the providers of Prefect objects --------------------------------


@pytest.fixture(scope="session")
def prefect_servers() -> Iterator[Any]:
    """(open server, basic-auth server) on 127.0.0.1, started once (tests/prefect_servers.py)."""
    from prefect_servers import running_servers

    with running_servers() as servers:
        yield servers
