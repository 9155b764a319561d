"""AgentService: the worker's container, task definition and service, as ECS would get them."""

from __future__ import annotations

import contextlib
import http.server
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ACCOUNT, REGION, Run, name_values, run_pulumi

from components.agent_service import STOP_TIMEOUT_SECONDS, SUPERVISOR_PATH, AgentService, AgentServiceArgs
from components.config import TaskSize

IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/agent@sha256:{'a' * 64}"
VALUE_FROM = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:key-AbC123:::11111111-2222-3333-4444-555555555555"
API_URL = "https://api.prefect.cloud/api/accounts/a/workspaces/w"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/workers"


def service_args(**overrides: object) -> AgentServiceArgs:
    values: dict[str, object] = {
        "image": IMAGE,
        "execution_role_arn": f"arn:aws:iam::{ACCOUNT}:role/execution",
        "task_role_arn": f"arn:aws:iam::{ACCOUNT}:role/task",
        "api_key_value_from": VALUE_FROM,
        "prefect_api_url": API_URL,
        "work_pool": "etl-pool",
        "log_level": "DEBUG",
        "cluster_arn": CLUSTER_ARN,
        "log_group_name": "/prefect-fargate/test/prefect",
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
    # What docs/how-it-works.md promises: a check every 30 s, 10 s to answer, the task replaced
    # after 3 failures in a row, the first 60 s not counted.
    assert {k: check[k] for k in ("interval", "timeout", "retries", "startPeriod")} == {
        "interval": 30,
        "timeout": 10,
        "retries": 3,
        "startPeriod": 60,
    }


class _Stub(http.server.BaseHTTPRequestHandler):
    """The worker's /health as the probe meets it: answers `server.status`, or never answers (None)."""

    def do_GET(self) -> None:
        server: Any = self.server
        server.paths.append(self.path)
        if server.status is None:
            server.release.wait(30)  # hang: the probe must give up by itself
            return
        self.send_response(server.status)
        self.end_headers()

    def log_message(self, *_: Any) -> None:  # keep pytest's output clean
        pass


@contextlib.contextmanager
def stub_health(status: int | None) -> Iterator[tuple[int, list[str]]]:
    """A stub /health on a free loopback port: (port, paths requested)."""
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.status, server.paths, server.release = status, [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server.paths
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_health_check(container: dict[str, Any], port: int) -> tuple[int, float]:
    """The container's health check run as ECS runs the CMD form (argv exec'd, no shell), aimed at
    `port` instead of the worker's; (exit code, seconds taken)."""
    command = container["healthCheck"]["command"]
    assert command[0] == "CMD"
    declared = name_values(container["environment"])["PREFECT_WORKER_WEBSERVER_PORT"]
    argv = [part.replace(f":{declared}/", f":{port}/") for part in command[1:]]
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",  # `python` as in the image: the first on PATH
        **name_values(container["environment"]),
        "PREFECT_WORKER_WEBSERVER_PORT": str(port),
    }
    started = time.monotonic()
    timeout = container["healthCheck"]["timeout"]
    try:
        code = subprocess.run(argv, env=env, capture_output=True, timeout=timeout + 5).returncode
    except subprocess.TimeoutExpired:
        code = -1
    return code, time.monotonic() - started


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)], ids=["200", "503", "hang"])
def test_health_check_passes_only_on_200_within_its_timeout(
    service_run: Run, status: int | None, healthy: bool
) -> None:
    container = service_run.container()
    with stub_health(status) as (port, paths):
        code, seconds = run_health_check(container, port)
    assert paths == ["/health"]  # it reached the stub: the outcome is the answer's, not a refused connection
    assert (code == 0) is healthy
    assert code != -1 and seconds < container["healthCheck"]["timeout"]  # ECS would count a slower probe as failed


def test_health_check_fails_with_nothing_listening(service_run: Run) -> None:
    code, _ = run_health_check(service_run.container(), free_port())
    assert code not in (0, -1)


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


def test_task_definition_is_fargate_with_the_configured_size(service_run: Run) -> None:
    task = service_run.one("aws:ecs/taskDefinition:TaskDefinition").plain_inputs
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"
    assert (task["cpu"], task["memory"]) == ("1024", "3072")
    assert task["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "ARM64"}
    assert task["executionRoleArn"].endswith("role/execution")
    assert task["taskRoleArn"].endswith("role/task")


@pytest.mark.parametrize(
    ("capacity", "placement"),
    [
        ("FARGATE", {"launchType": "FARGATE"}),
        ("FARGATE_SPOT", {"capacityProviderStrategies": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}),
    ],
)
def test_the_service_is_placed_by_a_launch_type_or_a_strategy_never_both(
    capacity: str, placement: dict[str, Any]
) -> None:
    """ECS's CreateService refuses a launch type together with a capacity provider strategy; moto and the
    provider's schema take both (a mutation passed the deploy rehearsal), so this is where the rule is held."""
    args = service_args(capacity=capacity, cpu_architecture="X86_64")
    service = run_pulumi(lambda: AgentService("svc", args)).one("aws:ecs/service:Service").plain_inputs
    assert {key: service[key] for key in ("launchType", "capacityProviderStrategies") if key in service} == placement


def test_service_rolls_back_failed_deployments(service_run: Run) -> None:
    service = service_run.one("aws:ecs/service:Service").plain_inputs
    assert service["cluster"] == CLUSTER_ARN
    assert service["launchType"] == "FARGATE"
    assert service["desiredCount"] == 2
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["networkConfiguration"] == {
        "subnets": ["subnet-0aaaaaaaaaaaaaaa1"],
        "securityGroups": ["sg-0aaaaaaaaaaaaaaa1"],
        "assignPublicIp": False,
    }
    assert service["taskDefinition"].startswith(f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/")
