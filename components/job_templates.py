"""Base job templates of the work pool, as pure functions of plain values (no Pulumi in here).

- `process`: Prefect's own default template of the process worker, unchanged.
- `ecs`: prefect-aws's own default ECS template, its variables' defaults filled from the stack:
  cluster, network, roles, the digest-pinned agent image, CloudWatch logs, the flow-run size, the
  Prefect credential (API key or auth string) as a Secrets Manager reference (so RunTask never
  carries it in plaintext), and the flow runs' environment (their heartbeats, the same
  liveness signal as the process worker's runs); task definitions reused across deployments (one family
  per task size, matched by its latest revision), and Fargate Spot with interrupted runs put back
  in the queue when chosen.
"""

from __future__ import annotations

import copy
import re
from typing import Any

FLOW_RUN_LOG_PREFIX = "flow-run"
# prefect-aws's variable for each credential (prefect_aws/workers/ecs_worker.py, ECSVariables): the worker
# puts it in the task definition's `secrets` and, in `ECSJobConfiguration.prepare_for_flow_run`, drops the
# variable of the same name from the env it copies from its own settings, so RunTask never carries the value.
SECRET_ARN_VARIABLES = {
    "PREFECT_API_KEY": "prefect_api_key_secret_arn",
    "PREFECT_API_AUTH_STRING": "prefect_api_auth_string_secret_arn",
}
# prefect-aws registers a task definition family per deployment (`prefect_<pool>_<deployment id>`,
# ECSWorker._get_or_generate_family), so many deployments hit ECS's register throttling. Here every
# flow run of one size shares a family, and `match_latest_revision_in_family` makes the worker reuse
# its latest revision when it equals what it would register (ECSWorker._get_or_register_task_definition):
# one registration per distinct task definition. The size is in the family's name because a family
# holding two sizes would flip its latest revision between them and register again at every flip.
FAMILY_SEPARATOR = "_"  # never in the stack's family prefix, so `<prefix>_*` matches this stack only
TASK_DEFINITION_FAMILY = "{{ family }}" + FAMILY_SEPARATOR + "{{ cpu }}" + FAMILY_SEPARATOR + "{{ memory }}"
# A Spot interruption is a SIGTERM to the task (two minutes before it is stopped). `prefect flow-run
# execute`, the command prefect-aws gives the task, then proposes AwaitingRetry for its run instead of
# leaving it to crash (prefect/cli/flow_run.py, execute and _termination_intent), so the worker starts
# it again in a new task.
SPOT_FLOW_RUN_ENVIRONMENT = {"PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR": "reschedule"}


def flow_run_family_prefix(project: str, stack: str) -> str:
    """This stack's task definition family prefix: letters, digits and '-' only (ECS allows '_' too,
    which is kept for the separator)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", f"{project}-{stack}-flow-run")


def process_base_job_template() -> dict[str, Any]:
    """The process worker's default template (flow runs are subprocesses of the worker)."""
    from prefect.workers.process import ProcessWorker

    return copy.deepcopy(ProcessWorker.get_default_base_job_template())


def ecs_base_job_template(
    *,
    cluster_arn: str,
    vpc_id: str,
    subnet_ids: list[str],
    security_group_ids: list[str],
    assign_public_ip: bool,
    execution_role_arn: str,
    task_role_arn: str,
    image: str,
    log_group_name: str,
    region: str,
    api_key_value_from: str | None,
    cpu: int,
    memory: int,
    cpu_architecture: str,
    flow_run_env: dict[str, str],
    family_prefix: str,
    capacity: str = "FARGATE",
    repository_credentials_arn: str | None = None,
    credential_env: str = "PREFECT_API_KEY",
) -> dict[str, Any]:
    """prefect-aws's default ECS template with this stack's resources as the variables' defaults.

    Deployments may still override any variable (`job_variables`); the defaults are what a flow
    run gets when they do not. `capacity` FARGATE_SPOT runs flow runs on Fargate Spot.
    """
    from prefect_aws.workers.ecs_worker import ECSWorker

    template = copy.deepcopy(ECSWorker.get_default_base_job_template())
    defaults = {
        "cluster": cluster_arn,
        "vpc_id": vpc_id,
        "network_configuration": {
            "subnets": list(subnet_ids),
            "securityGroups": list(security_group_ids),
            "assignPublicIp": "ENABLED" if assign_public_ip else "DISABLED",
        },
        "execution_role_arn": execution_role_arn,
        "task_role_arn": task_role_arn,
        "image": image,
        "cpu": cpu,
        "memory": memory,
        "configure_cloudwatch_logs": True,
        "cloudwatch_logs_options": {
            "awslogs-group": log_group_name,
            "awslogs-region": region,
            "awslogs-stream-prefix": FLOW_RUN_LOG_PREFIX,
            # The group exists (Pulumi made it, with a retention): the execution role may not create groups.
            "awslogs-create-group": "false",
        },
        "env": {**flow_run_env, **(SPOT_FLOW_RUN_ENVIRONMENT if capacity == "FARGATE_SPOT" else {})},
        # No credential (a self-hosted server without authentication): the variables keep prefect-aws's null.
        **({SECRET_ARN_VARIABLES[credential_env]: api_key_value_from} if api_key_value_from else {}),
        "family": family_prefix,
        "match_latest_revision_in_family": True,
        # prefect-aws turns FARGATE_SPOT into RunTask's capacityProviderStrategy (FARGATE_SPOT, weight 1)
        # without a launchType, and still registers a Fargate task definition for it
        # (ECSWorker._prepare_task_run_request, _prepare_task_definition). A deployment that must not
        # be interrupted sets `launch_type: FARGATE`.
        "launch_type": capacity,
    }
    properties = template["variables"]["properties"]
    unknown = set(defaults) - set(properties)
    if unknown:  # a prefect-aws release renamed a variable: fail here, not on the first flow run
        raise ValueError(f"prefect-aws's ECS template has no variables {sorted(unknown)}")
    for variable, value in defaults.items():
        properties[variable]["default"] = value
    # Flow runs must run on the architecture the image was built for (no variable for it upstream).
    task_definition = template["job_configuration"]["task_definition"]
    task_definition["runtimePlatform"] = {"cpuArchitecture": cpu_architecture, "operatingSystemFamily": "LINUX"}
    task_definition["family"] = TASK_DEFINITION_FAMILY
    if repository_credentials_arn:  # the image's registry login; prefect-aws keeps the container's other keys
        (container,) = task_definition["containerDefinitions"]
        container["repositoryCredentials"] = {"credentialsParameter": repository_credentials_arn}
    return template
