"""AgentService: the worker's container, task definition and service, as ECS would get them."""

from __future__ import annotations

import shlex

import pytest
from conftest import ACCOUNT, REGION, Run, name_values, run_pulumi

from components.agent_service import STOP_TIMEOUT_SECONDS, SUPERVISOR_PATH, AgentService, AgentServiceArgs
from components.config import TaskSize

IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/agent@sha256:{'a' * 64}"
VALUE_FROM = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:key-AbC123:::11111111-2222-3333-4444-555555555555"
API_URL = "https://api.prefect.cloud/api/accounts/a/workspaces/w"


def service_args(**overrides: object) -> AgentServiceArgs:
    values: dict[str, object] = {
        "image": IMAGE,
        "execution_role_arn": f"arn:aws:iam::{ACCOUNT}:role/execution",
        "task_role_arn": f"arn:aws:iam::{ACCOUNT}:role/task",
        "api_key_value_from": VALUE_FROM,
        "prefect_api_url": API_URL,
        "work_pool": "etl-pool",
        "log_level": "DEBUG",
        "log_group_name": "/prefect-fargate/test/prefect",
        "log_retention_days": 14,
        "size": TaskSize(cpu=1024, memory=3072),
        "cpu_architecture": "ARM64",
        "desired_count": 2,
        "subnet_ids": ["subnet-0aaaaaaaaaaaaaaa1"],
        "security_group_ids": ["sg-0aaaaaaaaaaaaaaa1"],
        "assign_public_ip": False,
        **overrides,
    }
    return AgentServiceArgs(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def service_run() -> Run:
    return run_pulumi(lambda: AgentService("svc", service_args()))


def test_container_runs_the_worker_behind_its_supervisor_without_a_shell(service_run: Run) -> None:
    container = service_run.container()
    assert container["image"] == IMAGE
    assert "entryPoint" not in container  # the image's tini entrypoint stays, and passes SIGTERM on
    command = container["command"]
    assert command[:2] == ["python", SUPERVISOR_PATH]
    assert command[command.index("--stop-timeout") + 1] == str(container["stopTimeout"])
    argv = command[command.index("--") + 1 :]
    assert argv[:3] == ["prefect", "worker", "start"]
    assert "--no-create-pool-if-not-found" in argv  # the pool is `pulumi up`'s: a worker never makes one
    assert argv[argv.index("--pool") + 1] == "etl-pool"
    assert argv[argv.index("--type") + 1] == "process"
    assert "--with-healthcheck" in argv
    assert not {"sh", "bash", "-c"} & set(argv)


def test_container_environment_and_secret(service_run: Run) -> None:
    container = service_run.container()
    env = name_values(container["environment"])
    assert env["PREFECT_API_URL"] == API_URL
    assert env["PREFECT_LOGGING_LEVEL"] == "DEBUG"
    assert "PREFECT_API_KEY" not in env
    assert container["secrets"] == [{"name": "PREFECT_API_KEY", "valueFrom": VALUE_FROM}]


def test_health_check_probes_the_workers_health_port(service_run: Run) -> None:
    container = service_run.container()
    env = name_values(container["environment"])
    check = container["healthCheck"]
    assert check["command"][:2] == ["CMD", "python"]  # the Prefect image has no curl or wget
    probe = shlex.join(check["command"][1:])
    assert f"{env['PREFECT_WORKER_WEBSERVER_HOST']}:{env['PREFECT_WORKER_WEBSERVER_PORT']}/health" in probe
    assert check["startPeriod"] >= 30 and check["retries"] >= 2


def test_stop_timeout_and_logs(service_run: Run) -> None:
    container = service_run.container()
    assert container["stopTimeout"] == STOP_TIMEOUT_SECONDS <= 120  # Fargate's maximum
    assert container["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": "/prefect-fargate/test/prefect",
            "awslogs-region": REGION,
            "awslogs-stream-prefix": "worker",
        },
    }
    group = service_run.one("aws:cloudwatch/logGroup:LogGroup").plain_inputs
    assert group["name"] == "/prefect-fargate/test/prefect"
    assert group["retentionInDays"] == 14


def test_task_definition_is_fargate_with_the_configured_size(service_run: Run) -> None:
    task = service_run.one("aws:ecs/taskDefinition:TaskDefinition").plain_inputs
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"
    assert (task["cpu"], task["memory"]) == ("1024", "3072")
    assert task["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "ARM64"}
    assert task["executionRoleArn"].endswith("role/execution")
    assert task["taskRoleArn"].endswith("role/task")


def test_service_rolls_back_failed_deployments(service_run: Run) -> None:
    service = service_run.one("aws:ecs/service:Service").plain_inputs
    cluster = service_run.one("aws:ecs/cluster:Cluster")
    assert service["cluster"] == cluster.outputs["arn"]
    assert service["launchType"] == "FARGATE"
    assert service["desiredCount"] == 2
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["networkConfiguration"] == {
        "subnets": ["subnet-0aaaaaaaaaaaaaaa1"],
        "securityGroups": ["sg-0aaaaaaaaaaaaaaa1"],
        "assignPublicIp": False,
    }
    assert service["taskDefinition"].startswith(f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/")
