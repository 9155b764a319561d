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
    # execution, task, the stack controller's and the alert notifier's
    assert len(default_run.of_type("aws:iam/role:Role")) == 4


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
    stack controller sees its task stopped; they beat at the same, checked, frequency all the same (the run's
    own liveness signal wherever it runs)."""
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
    families = f"{ECS_ARN}:task-definition/{defaults(ecs_run)['family']}_*"  # this stack's flow-run families only
    expected = {
        "RegisterOwnTaskDefinitions": (
            ["ecs:RegisterTaskDefinition"],
            [families],
            {"StringEqualsIfExists": {"ecs:privileged": "false"}},
        ),
        "DescribeTaskDefinitions": (["ecs:DescribeTaskDefinition"], ["*"], None),  # takes no resource type
        "RunOnThisCluster": (["ecs:RunTask"], [families], on_cluster),
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
        "prefect-controller-policy",
        "prefect-alerts-notifier-policy",
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
    template = moto_template(family_prefix=defaults(ecs_run)["family"], credential_env=credential_env)
    cluster, subnet, group = template_default(template, "cluster"), *_network(template)
    flow_run_role = template_default(template, "task_role_arn")
    execution_role, value_from = MOTO_EXECUTION_ROLE, MOTO_VALUE_FROM

    calls = record_aws_calls(monkeypatch)

    flow_run = FlowRun(flow_id=uuid.uuid4(), deployment_id=uuid.uuid4(), name="sample-run")
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api", credential_env: credential}):
        configuration = _job_configuration(template)
        configuration.prepare_for_flow_run(flow_run)
        task_arn, cluster_arn = ECSWorker(work_pool_name="fargate-pool")._prepare_and_create_task(
            logging.getLogger("test"), configuration.aws_credentials.get_client("ecs"), configuration, flow_run
        )
    assert cluster_arn == cluster
    worker_calls = {f"ecs:{operation}" for service, operation, _ in calls if service == "ecs"}
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

    # Every AWS call the worker made is one its policy grants, on the task definitions it names
    # (PassRole rides on RunTask).
    assert_allowed(ecs_run, calls, [registered])
    assert task_arn.startswith(f"{ECS_ARN}:task/")
    assert worker_calls >= {"ecs:RegisterTaskDefinition", "ecs:RunTask"}


MOTO_EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/execution"
MOTO_VALUE_FROM = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:key-AbC123:::0b1c2d3e"


def moto_template(
    family_prefix: str, capacity: str = "FARGATE", credential_env: str = "PREFECT_API_KEY"
) -> dict[str, Any]:
    """The pool's template on a moto network (call inside `aws_env`): what the worker gets in the test."""
    vpc, subnet, group, cluster = moto_ecs_network()
    return ecs_base_job_template(
        cluster_arn=cluster,
        vpc_id=vpc,
        subnet_ids=[subnet],
        security_group_ids=[group],
        assign_public_ip=False,
        execution_role_arn=MOTO_EXECUTION_ROLE,
        task_role_arn=f"arn:aws:iam::{ACCOUNT}:role/flow-run",
        image=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/agent@sha256:{'a' * 64}",
        log_group_name="/prefect-fargate/test/prefect",
        region=REGION,
        api_key_value_from=MOTO_VALUE_FROM,
        cpu=2048,
        memory=4096,
        cpu_architecture="ARM64",
        flow_run_env={"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"},
        family_prefix=family_prefix,
        capacity=capacity,
        credential_env=credential_env,
    )


def template_default(template: dict[str, Any], variable: str) -> Any:
    return template["variables"]["properties"][variable]["default"]


def _network(template: dict[str, Any]) -> tuple[str, str]:
    network = template_default(template, "network_configuration")
    return network["subnets"][0], network["securityGroups"][0]


def _task_definition_arn(reference: str) -> str:
    """RunTask takes a family, `family:revision` or an ARN; IAM sees an ARN."""
    return reference if reference.startswith("arn:") else f"{ECS_ARN}:task-definition/{reference}"


def assert_allowed(run: Run, calls: list[tuple[str, str, dict[str, Any]]], registered: list[str]) -> None:
    """Each recorded ECS call is allowed by the worker's policy as moto's IAM evaluator reads it, on the
    task definition the call names (RegisterTaskDefinition: the revision it created)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    policy = IAMPolicy(run.one("aws:iam/rolePolicy:RolePolicy", "ecs-pool-worker-policy").plain_inputs["policy"])
    revisions = iter(registered)  # in the order they were registered
    for service, operation, params in calls:
        if service != "ecs" and service != "ec2":
            continue
        if operation == "RegisterTaskDefinition":
            resource = next(revisions)
            assert not any(c.get("privileged") for c in params["containerDefinitions"])  # ecs:privileged
        elif operation == "RunTask":
            resource = _task_definition_arn(params["taskDefinition"])
        else:
            resource = "*"  # DescribeTaskDefinition, DescribeSubnets/DescribeVpcs: no resource type
        result = policy.is_action_permitted(f"{service}:{operation}", resource)
        assert result == PermissionResult.PERMITTED, (operation, resource)


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
    assert "default" in properties["task_definition_arn"] and properties["task_definition_arn"]["default"] is None


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
    expected = sorted(
        [aws.ecs.ClusterCapacityProviders.__name__, WorkPool.__name__]
        + ([EcsPoolRoles.__name__, EcsTaskEvents.__name__] if config is ECS_CONFIG else [])
    )
    assert kinds == expected


# -- task definitions reused across deployments (prefect#16485, #15865) -------------------------


def submit_runs(template: dict[str, Any], runs: list[tuple[uuid.UUID, dict[str, Any]]]) -> list[str]:
    """Each (deployment id, job variables) run submitted as prefect-aws's worker does; their task ARNs."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
    from prefect_aws.workers.ecs_worker import ECSWorker

    worker, flow_id, task_arns = ECSWorker(work_pool_name="fargate-pool"), uuid.uuid4(), []
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_API_KEY: API_KEY}):
        for deployment_id, job_variables in runs:
            flow_run = FlowRun(flow_id=flow_id, deployment_id=deployment_id, name="run")
            configuration = _job_configuration(template, job_variables)
            configuration.prepare_for_flow_run(flow_run)
            client = configuration.aws_credentials.get_client("ecs")
            task_arns.append(
                worker._prepare_and_create_task(logging.getLogger("test"), client, configuration, flow_run)[0]
            )
    return task_arns


def test_deployments_share_one_task_definition_per_size(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, ecs_run: Run
) -> None:
    """5 deployments (two of them bigger), 10 runs interleaved, and the worker restarted halfway: one
    registration per distinct task definition, none per run or per deployment."""
    from prefect_aws.workers import ecs_worker

    ecs = boto3.client("ecs")
    template = moto_template(family_prefix=defaults(ecs_run)["family"])
    big = {"cpu": 4096, "memory": 16384}
    deployments = [(uuid.uuid4(), big if n in (1, 3) else {}) for n in range(5)]
    calls = record_aws_calls(monkeypatch)
    monkeypatch.setattr(ecs_worker, "_TASK_DEFINITION_CACHE", {})  # a fresh worker process
    submit_runs(template, deployments)
    monkeypatch.setattr(ecs_worker, "_TASK_DEFINITION_CACHE", {})  # the worker restarted
    submit_runs(template, deployments)
    monkeypatch.undo()

    operations = [operation for _, operation, _ in calls]
    assert operations.count("RunTask") == 10
    assert operations.count("RegisterTaskDefinition") == 2
    registered = ecs.list_task_definitions()["taskDefinitionArns"]
    prefix = f"{ECS_ARN}:task-definition/{defaults(ecs_run)['family']}"
    assert sorted(registered) == [f"{prefix}_2048_4096:1", f"{prefix}_4096_16384:1"]
    run_tasks = [params for _, operation, params in calls if operation == "RunTask"]
    sizes = {tuple(big.values()) if job_variables else (2048, 4096) for _, job_variables in deployments}
    assert {params["taskDefinition"] for params in run_tasks} == {f"{prefix}_{c}_{m}:1" for c, m in sizes}
    assert_allowed(ecs_run, calls, registered)


def test_another_family_is_not_granted(ecs_run: Run) -> None:
    """prefect-aws's own per-deployment family, or another stack's, is refused (mutation guard for the scope)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    policy = IAMPolicy(ecs_run.one("aws:iam/rolePolicy:RolePolicy", "ecs-pool-worker-policy").plain_inputs["policy"])
    own = defaults(ecs_run)["family"]
    for family in (f"prefect_fargate-pool_{uuid.uuid4()}", f"{own}-other_1024_2048", "other-stack_1024_2048"):
        for action in ("ecs:RegisterTaskDefinition", "ecs:RunTask"):  # DescribeTaskDefinition takes only "*"
            arn = f"{ECS_ARN}:task-definition/{family}:1"
            assert policy.is_action_permitted(action, arn) == PermissionResult.NEUTRAL, (action, arn)


# -- Fargate Spot ----------------------------------------------------------------------------------

SPOT_CONFIG = {
    **ECS_CONFIG,
    "workerCapacity": "FARGATE_SPOT",
    "flowRunCapacity": "FARGATE_SPOT",
    "cpuArchitecture": "ARM64",  # Spot runs ARM64 tasks on platform 1.4.0+ (the cheapest worker)
}


@pytest.fixture(scope="module")
def spot_run() -> Run:
    return run_program(SPOT_CONFIG)


def test_cluster_offers_both_fargate_capacities(ecs_run: Run) -> None:
    providers = ecs_run.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders").plain_inputs
    assert providers["clusterName"] == ecs_run.outputs["clusterName"]
    assert sorted(providers["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]


@pytest.mark.parametrize(
    ("config", "launch_type", "strategy"),
    [
        (ECS_CONFIG, "FARGATE", None),
        (SPOT_CONFIG, None, [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]),
    ],
    ids=["on-demand", "spot"],
)
def test_worker_service_runs_on_the_chosen_capacity(
    config: dict[str, str], launch_type: str | None, strategy: Any, ecs_run: Run, spot_run: Run
) -> None:
    run = spot_run if config is SPOT_CONFIG else ecs_run
    service = run.one("aws:ecs/service:Service").plain_inputs
    assert service.get("launchType") == launch_type
    assert service.get("capacityProviderStrategies") == strategy
    # LATEST is platform 1.4.0 for Linux, which Fargate Spot needs for ARM64 (ECS API reference,
    # CapacityProviderStrategyItem); an older pinned version would be refused there.
    assert service["platformVersion"] == "LATEST"
    task = run.one("aws:ecs/taskDefinition:TaskDefinition").plain_inputs
    assert task["runtimePlatform"]["cpuArchitecture"] == config["cpuArchitecture"] == "ARM64"
    assert not service.get("forceNewDeployment")  # a strategy change replaces the service (test_service_rollout)


def test_spot_flow_runs_use_fargate_spot_and_are_put_back_on_sigterm(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, spot_run: Run, ecs_run: Run
) -> None:
    """What the worker sends for a Spot pool: a Fargate task definition, RunTask with the FARGATE_SPOT
    strategy and no launch type, and the reschedule-on-SIGTERM setting in the task's environment."""
    values = defaults(spot_run)
    assert values["launch_type"] == "FARGATE_SPOT"
    assert defaults(ecs_run)["launch_type"] == "FARGATE"
    assert "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR" not in defaults(ecs_run)["env"]

    ecs = boto3.client("ecs")
    template = moto_template(family_prefix=values["family"], capacity="FARGATE_SPOT")
    calls = record_aws_calls(monkeypatch)
    submit_runs(template, [(uuid.uuid4(), {}), (uuid.uuid4(), {"launch_type": "FARGATE"})])
    monkeypatch.undo()

    spot, on_demand = [params for _, operation, params in calls if operation == "RunTask"]
    assert spot["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    assert "launchType" not in spot
    assert "platformVersion" not in spot  # so ECS runs LATEST, 1.4.0, which ARM64 on Spot needs
    environment = name_values(spot["overrides"]["containerOverrides"][0]["environment"])
    assert environment["PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"] == "reschedule"
    assert spot["overrides"]["containerOverrides"][0]["command"] == ["prefect", "flow-run", "execute"]
    # A deployment may opt out of Spot with `launch_type: FARGATE`.
    assert on_demand["launchType"] == "FARGATE" and not on_demand.get("capacityProviderStrategy")
    (registered,) = ecs.list_task_definitions()["taskDefinitionArns"]  # the same definition for both
    task_definition = ecs.describe_task_definition(taskDefinition=registered)["taskDefinition"]
    assert task_definition["requiresCompatibilities"] == ["FARGATE"]
    assert task_definition["runtimePlatform"]["cpuArchitecture"] == "ARM64"  # the template's, as SPOT_CONFIG's
    assert task_definition["networkMode"] == "awsvpc"
