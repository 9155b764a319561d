"""The `ecs` work pool: its template is the stack's resources, its IAM is scoped, the key stays out.

Under mocks: what the program registers with workPoolType=ecs. With moto: prefect-aws's own ECS
worker turns the filled template into a task definition and a RunTask request for a sample flow
run (moto's ECS registers the task definition; RunTask, where moto's Fargate support falls short, is
checked against botocore's request shape and then answered locally).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any
from unittest.mock import AsyncMock

import boto3
import pytest
from conftest import (
    ACCOUNT,
    API_KEY,
    BASE_CONFIG,
    INVOKES,
    REGION,
    Run,
    moto_ecs_network,
    name_values,
    record_aws_calls,
    run_program,
    strings_in,
)
from moto import mock_aws

from components.job_templates import FLOW_RUN_LOG_PREFIX, ecs_base_job_template, process_base_job_template

POOL = "pulumi-python:dynamic/prefect:WorkPool"
ECS_CONFIG = {
    **BASE_CONFIG,
    "workPoolType": "ecs",
    "workPoolConcurrency": "20",
    "flowRunCpu": "2048",
    "flowRunMemory": "4096",
    "cpuArchitecture": "ARM64",
}
ECS_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}"


@pytest.fixture(scope="module")
def ecs_run() -> Run:
    return run_program(ECS_CONFIG)


def pool_inputs(run: Run) -> dict[str, Any]:
    """The pool's inputs, its template (sent as JSON text) parsed."""
    inputs = dict(run.one(POOL).plain_inputs)
    inputs["base_job_template"] = json.loads(inputs["base_job_template"])
    return inputs


def defaults(run: Run) -> dict[str, Any]:
    """The template variables' defaults: what a flow run gets unless its deployment overrides them."""
    properties = pool_inputs(run)["base_job_template"]["variables"]["properties"]
    return {name: spec.get("default") for name, spec in properties.items()}


def statements(run: Run, policy_name: str) -> dict[str, dict[str, Any]]:
    """Sid -> statement, from one inline policy, with Action and Resource always lists."""
    document = run.one("aws:iam/rolePolicy:RolePolicy", policy_name).json_input("policy")
    found = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        found[statement["Sid"]] = {
            **statement,
            "Action": sorted(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]),
            "Resource": sorted(
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            ),
        }
    return found


def role_arn(run: Run, suffix: str) -> str:
    return run.one("aws:iam/role:Role", suffix).outputs["arn"]


# -- the pool resource -----------------------------------------------------------------------------


def test_process_stays_the_default_with_prefects_own_template(default_run: Run) -> None:
    pool = pool_inputs(default_run)
    assert (pool["name"], pool["type"], pool.get("concurrency_limit")) == ("fargate-pool", "process", None)
    assert pool["base_job_template"] == process_base_job_template()
    assert pool["api_url"] == default_run.outputs["prefectApiUrl"]
    command = default_run.container()["command"]
    assert command[command.index("--type") + 1] == "process"
    assert default_run.outputs["workPoolType"] == "process"
    assert "flowRunRoleArn" not in default_run.outputs
    assert len(default_run.of_type("aws:iam/role:Role")) == 2


def test_ecs_pool_is_declared_with_its_limit(ecs_run: Run) -> None:
    pool = pool_inputs(ecs_run)
    assert (pool["name"], pool["type"], pool["concurrency_limit"]) == ("fargate-pool", "ecs", 20)
    assert ecs_run.outputs["workPoolType"] == "ecs"


def test_ecs_worker_only_submits(ecs_run: Run) -> None:
    container = ecs_run.container()
    assert container["command"][:5] == ["prefect", "worker", "start", "--pool", "fargate-pool"]  # no supervisor
    assert container["command"][5:7] == ["--type", "ecs"]
    env = name_values(container["environment"])
    queue = ecs_run.one("aws:sqs/queue:Queue", "ecs-events-queue")
    assert env["PREFECT_INTEGRATIONS_AWS_ECS_OBSERVER_SQS_QUEUE_NAME"] == queue.outputs["name"]


def test_template_defaults_are_the_stacks_resources(ecs_run: Run) -> None:
    values = defaults(ecs_run)
    subnets = ecs_run.one("aws:ecs/service:Service").plain_inputs["networkConfiguration"]["subnets"]
    group = ecs_run.one("aws:ec2/securityGroup:SecurityGroup").id
    secret = ecs_run.one("aws:secretsmanager/secret:Secret").outputs["arn"]
    version = ecs_run.one("aws:secretsmanager/secretVersion:SecretVersion").outputs["versionId"]
    assert values["cluster"] == ecs_run.one("aws:ecs/cluster:Cluster").outputs["arn"]
    assert values["vpc_id"] == INVOKES["aws:ec2/getVpc:getVpc"]["id"]
    assert values["network_configuration"] == {
        "subnets": subnets,
        "securityGroups": [group],
        "assignPublicIp": "ENABLED",
    }
    assert values["execution_role_arn"] == role_arn(ecs_run, "roles-execution")
    assert values["task_role_arn"] == role_arn(ecs_run, "ecs-pool-flow-run")
    assert values["task_role_arn"] != role_arn(ecs_run, "roles-task")  # not the worker's own role
    assert values["image"] == ecs_run.outputs["imageUri"] and "@sha256:" in values["image"]
    assert (values["cpu"], values["memory"]) == (2048, 4096)
    assert values["configure_cloudwatch_logs"] is True
    assert values["cloudwatch_logs_options"] == {
        "awslogs-group": ecs_run.outputs["logGroupName"],
        "awslogs-region": REGION,
        "awslogs-stream-prefix": FLOW_RUN_LOG_PREFIX,
        "awslogs-create-group": "false",
    }
    assert values["prefect_api_key_secret_arn"] == f"{secret}:::{version}"
    task_definition = pool_inputs(ecs_run)["base_job_template"]["job_configuration"]["task_definition"]
    assert task_definition["runtimePlatform"] == {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}


def test_ecs_flow_runs_beat_as_the_process_workers_do(ecs_run: Run, default_run: Run) -> None:
    """A flow-run task that dies (its own out-of-memory kill, a stop) leaves its run RUNNING unless the
    zombie automation sees its heartbeats stop: they beat at the same, checked, frequency."""
    process_env = name_values(default_run.container()["environment"])
    beat = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
    template = pool_inputs(ecs_run)["base_job_template"]
    assert _job_configuration(template).env[beat] == process_env[beat]
    # A deployment's own env is added to the pool's, not put in its place.
    configuration = _job_configuration(template, {"env": {"WAREHOUSE": "analytics"}})
    assert configuration.env == {beat: process_env[beat], "WAREHOUSE": "analytics"}


def test_template_follows_the_network_config() -> None:
    """Not literals: another VPC and private subnets give another template."""
    run = run_program(
        {
            **ECS_CONFIG,
            "vpcId": "vpc-0123456789abcdef0",
            "subnetIds": '["subnet-0123456789abcdef0"]',
            "securityGroupIds": '["sg-0123456789abcdef0"]',
            "assignPublicIp": "false",
        }
    )
    values = defaults(run)
    assert values["vpc_id"] == "vpc-0123456789abcdef0"
    assert values["network_configuration"] == {
        "subnets": ["subnet-0123456789abcdef0"],
        "securityGroups": ["sg-0123456789abcdef0"],
        "assignPublicIp": "DISABLED",
    }


def test_key_is_in_no_template_and_no_output(ecs_run: Run) -> None:
    assert not any(API_KEY in s for s in strings_in(pool_inputs(ecs_run)["base_job_template"]))
    assert not any(API_KEY in s for s in strings_in(ecs_run.outputs))
    holders = {
        (r.typ, key)
        for r in ecs_run.resources
        for key, value in r.plain_inputs.items()
        if any(API_KEY in s for s in strings_in(value))
    }
    assert holders == {
        ("aws:secretsmanager/secretVersion:SecretVersion", "secretString"),
        (POOL, "api_key"),
        ("pulumi-python:dynamic/prefect:Automation", "api_key"),  # a secret too (test_program.py)
    }
    from pulumi.runtime import rpc

    assert ecs_run.one(POOL).inputs["api_key"][rpc._special_sig_key] == rpc._special_secret_sig


# -- IAM -------------------------------------------------------------------------------------------


def test_flow_run_role_reads_the_flow_bucket_and_nothing_else(ecs_run: Run) -> None:
    bucket = ecs_run.one("aws:s3/bucket:Bucket").outputs["arn"]
    found = statements(ecs_run, "ecs-pool-flow-run-policy")
    assert {sid: (s["Action"], s["Resource"]) for sid, s in found.items()} == {
        "ListFlowBucket": (["s3:ListBucket"], [bucket]),
        "ReadFlowCode": (["s3:GetObject"], [f"{bucket}/*"]),
    }
    trust = ecs_run.one("aws:iam/role:Role", "ecs-pool-flow-run").json_input("assumeRolePolicy")
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}


def test_ecs_worker_gets_exactly_what_it_calls(ecs_run: Run) -> None:
    cluster = ecs_run.one("aws:ecs/cluster:Cluster").outputs
    tasks = f"{ECS_ARN}:task/{cluster['name']}/*"
    log_streams = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{ecs_run.outputs['logGroupName']}:log-stream:*"
    on_cluster = {"ArnEquals": {"ecs:cluster": cluster["arn"]}}
    queue = ecs_run.one("aws:sqs/queue:Queue", "ecs-events-queue").outputs["arn"]
    expected = {
        "TaskDefinitions": (["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"], ["*"], None),
        "RunOnThisCluster": (["ecs:RunTask"], [f"{ECS_ARN}:task-definition/*"], on_cluster),
        "ThisClustersTasks": (["ecs:DescribeTasks", "ecs:StopTask"], [tasks], on_cluster),
        "TagOnRunTask": (["ecs:TagResource"], [tasks], {"StringEquals": {"ecs:CreateAction": "RunTask"}}),
        "Network": (["ec2:DescribeSubnets", "ec2:DescribeVpcs"], ["*"], None),
        "FlowRunLogs": (["logs:GetLogEvents"], [log_streams], None),
        "ObserverQueue": (
            ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
            [queue],
            None,
        ),
        "PassFlowRunRoles": (
            ["iam:PassRole"],
            sorted([role_arn(ecs_run, "roles-execution"), role_arn(ecs_run, "ecs-pool-flow-run")]),
            {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        ),
    }
    found = statements(ecs_run, "ecs-pool-worker-policy")
    assert {sid: (s["Action"], s["Resource"], s.get("Condition")) for sid, s in found.items()} == expected
    policy = ecs_run.one("aws:iam/rolePolicy:RolePolicy", "ecs-pool-worker-policy").plain_inputs
    assert policy["role"] == ecs_run.one("aws:iam/role:Role", "roles-task").outputs["name"]


def test_ecs_worker_no_longer_reads_the_bucket(ecs_run: Run) -> None:
    """Flow code runs in the flow-run tasks; the worker's role keeps only the ECS policy."""
    policies = {p.name for p in ecs_run.of_type("aws:iam/rolePolicy:RolePolicy")}
    assert policies == {
        "prefect-roles-execution-policy",
        "prefect-ecs-pool-worker-policy",
        "prefect-ecs-pool-flow-run-policy",
    }


def test_ecs_policies_are_valid_iam_documents(ecs_run: Run) -> None:
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
        for role in ecs_run.of_type("aws:iam/role:Role"):
            iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=role.plain_inputs["assumeRolePolicy"])
        for policy in ecs_run.of_type("aws:iam/rolePolicy:RolePolicy"):
            role_name = policy.plain_inputs["role"].removesuffix("-id")
            iam.put_role_policy(
                RoleName=role_name, PolicyName=policy.name, PolicyDocument=policy.plain_inputs["policy"]
            )


# -- prefect-aws's worker on the filled template ---------------------------------------------------


# The worker's own credential (in its environment, so in the settings prefect-aws copies into every
# flow run's env: prefect/workers/base.py, BaseJobConfiguration._base_environment): a key or an auth string.
WORKER_CREDENTIALS = [("PREFECT_API_KEY", API_KEY), ("PREFECT_API_AUTH_STRING", "admin:Pass-That-Must-Never-Leak")]


@pytest.mark.parametrize(("credential_env", "credential"), WORKER_CREDENTIALS, ids=["key", "auth-string"])
def test_worker_builds_task_definition_and_run_task_from_the_template(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, ecs_run: Run, credential_env: str, credential: str
) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_aws.workers.ecs_worker import ECSWorker

    ecs = boto3.client("ecs")
    vpc, subnet, group, cluster = moto_ecs_network()
    execution_role, flow_run_role = f"arn:aws:iam::{ACCOUNT}:role/execution", f"arn:aws:iam::{ACCOUNT}:role/flow-run"
    value_from = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:key-AbC123:::0b1c2d3e"
    template = ecs_base_job_template(
        cluster_arn=cluster,
        vpc_id=vpc,
        subnet_ids=[subnet],
        security_group_ids=[group],
        assign_public_ip=False,
        execution_role_arn=execution_role,
        task_role_arn=flow_run_role,
        image=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/agent@sha256:{'a' * 64}",
        log_group_name="/prefect-fargate/test/prefect",
        region=REGION,
        api_key_value_from=value_from,
        cpu=2048,
        memory=4096,
        cpu_architecture="ARM64",
        flow_run_env={"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"},
        credential_env=credential_env,
    )

    calls = record_aws_calls(monkeypatch)

    flow_run = FlowRun(flow_id=uuid.uuid4(), deployment_id=uuid.uuid4(), name="sample-run")
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api", credential_env: credential}):
        configuration = _job_configuration(template)
        configuration.prepare_for_flow_run(flow_run)
        task_arn, cluster_arn = ECSWorker(work_pool_name="fargate-pool")._prepare_and_create_task(
            logging.getLogger("test"), configuration.aws_credentials.get_client("ecs"), configuration, flow_run
        )
    assert cluster_arn == cluster
    worker_calls = {f"{service}:{operation}" for service, operation, _ in calls}
    monkeypatch.undo()

    operations = [(service, operation) for service, operation, _ in calls]
    assert ("ecs", "RegisterTaskDefinition") in operations and ("ecs", "RunTask") in operations
    assert not any(credential in s for s in strings_in([params for _, _, params in calls]))

    (registered,) = ecs.list_task_definitions()["taskDefinitionArns"]
    task_definition = ecs.describe_task_definition(taskDefinition=registered)["taskDefinition"]
    (container,) = task_definition["containerDefinitions"]
    assert container["image"] == template["variables"]["properties"]["image"]["default"]
    assert container["secrets"] == [{"name": credential_env, "valueFrom": value_from}]
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/prefect-fargate/test/prefect"
    assert task_definition["executionRoleArn"] == execution_role
    assert (task_definition["cpu"], task_definition["memory"]) == ("2048", "4096")
    assert task_definition["runtimePlatform"]["cpuArchitecture"] == "ARM64"

    (run_task,) = [params for _, operation, params in calls if operation == "RunTask"]
    assert run_task["cluster"] == cluster and run_task["taskDefinition"] == registered
    assert run_task["overrides"]["taskRoleArn"] == flow_run_role
    assert run_task["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": [subnet],
        "securityGroups": [group],
        "assignPublicIp": "DISABLED",
    }
    environment = name_values(run_task["overrides"]["containerOverrides"][0]["environment"])
    assert credential_env not in environment and "PREFECT_API_URL" in environment
    assert environment["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"  # the template's env reaches the task
    assert run_task["tags"]  # hence ecs:TagResource in the worker's policy

    # Every AWS call the worker made is one its policy grants (PassRole rides on RunTask).
    granted = {action for s in statements(ecs_run, "ecs-pool-worker-policy").values() for action in s["Action"]}
    assert worker_calls <= granted, worker_calls - granted
    assert task_arn.startswith(f"{ECS_ARN}:task/")


def _job_configuration(template: dict[str, Any], job_variables: dict[str, Any] | None = None) -> Any:
    """What the worker makes of the pool's template and a deployment's `job_variables`.

    Given a stand-in client: the template has no block or variable references, so Prefect is never
    asked (with none, Prefect would start a whole ephemeral API to resolve nothing).
    """
    from prefect_aws.workers.ecs_worker import ECSJobConfiguration

    client = AsyncMock()
    values = job_variables or {}
    configuration = asyncio.run(ECSJobConfiguration.from_template_and_values(template, values, client=client))
    assert client.mock_calls == []
    return configuration


def test_a_request_outside_runtasks_shape_would_be_refused(aws_env: None) -> None:
    """The shape check above can fail: botocore refuses what AWS would refuse."""
    from botocore.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        boto3.client("ecs").run_task(taskDefinition="x", overrides={"containerOverrides": [{"cpu": "lots"}]})


def test_template_keeps_its_nulls(ecs_run: Run) -> None:
    """Sent as JSON text, the template reaches Prefect whole: Pulumi would drop `"default": null`."""
    properties = pool_inputs(ecs_run)["base_job_template"]["variables"]["properties"]
    assert properties["family"]["default"] is None


def test_the_programs_template_makes_a_valid_job_configuration(ecs_run: Run) -> None:
    """The very template the program registers, read by prefect-aws as the worker reads the pool."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
    from prefect_aws.workers.ecs_worker import ECSWorker

    template = pool_inputs(ecs_run)["base_job_template"]
    configuration = _job_configuration(template)
    flow_run = FlowRun(flow_id=uuid.uuid4(), deployment_id=uuid.uuid4(), name="sample-run")
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_API_KEY: API_KEY}):
        configuration.prepare_for_flow_run(flow_run)  # the worker's own key is set, as in its container
    values = defaults(ecs_run)
    assert configuration.cluster == values["cluster"]
    assert configuration.vpc_id == values["vpc_id"]
    assert configuration.network_configuration == values["network_configuration"]
    assert configuration.task_run_request["overrides"]["taskRoleArn"] == values["task_role_arn"]
    assert configuration.prefect_api_key_secret_arn == values["prefect_api_key_secret_arn"]
    assert "PREFECT_API_KEY" not in configuration.env

    task_definition = ECSWorker(work_pool_name="fargate-pool")._prepare_task_definition(
        configuration, region=REGION, flow_run=flow_run
    )
    (container,) = task_definition["containerDefinitions"]
    assert container["image"] == ecs_run.outputs["imageUri"]
    assert container["secrets"] == [{"name": "PREFECT_API_KEY", "valueFrom": values["prefect_api_key_secret_arn"]}]
    assert container["logConfiguration"]["options"]["awslogs-group"] == ecs_run.outputs["logGroupName"]
    assert task_definition["executionRoleArn"] == values["execution_role_arn"]
    assert (task_definition["cpu"], task_definition["memory"]) == ("2048", "4096")
    assert task_definition["requiresCompatibilities"] == ["FARGATE"]


@pytest.mark.parametrize("config", [BASE_CONFIG, ECS_CONFIG], ids=["process", "ecs"])
def test_workers_start_after_their_pool_and_stop_before_it_goes(
    config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service depends on the pool (and the ECS IAM and observer queue): created after it, destroyed
    before it, so a running worker cannot create the pool again once `pulumi destroy` has deleted it,
    and the observer finds its queue when the worker starts."""
    import pulumi_aws as aws

    from components.ecs_pool_roles import EcsPoolRoles
    from components.ecs_task_events import EcsTaskEvents
    from components.work_pool import WorkPool

    depends_on: list[Any] = []
    service_init = aws.ecs.Service.__init__

    def recording(self: Any, resource_name: str, *args: Any, opts: Any = None, **kwargs: Any) -> None:
        depends_on.extend(opts.depends_on or [])
        service_init(self, resource_name, *args, opts=opts, **kwargs)

    monkeypatch.setattr(aws.ecs.Service, "__init__", recording)
    run_program(config)
    kinds = sorted(type(resource).__name__ for resource in depends_on)
    ecs = [EcsPoolRoles.__name__, EcsTaskEvents.__name__, WorkPool.__name__]
    expected = ecs if config is ECS_CONFIG else [WorkPool.__name__]
    assert kinds == expected
