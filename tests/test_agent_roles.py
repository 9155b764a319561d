"""AgentRoles: least privilege, read from the parsed policy documents."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ACCOUNT, Run, run_pulumi

from components.agent_roles import AgentRoles, AgentRolesArgs

REPO_ARN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/agent"
SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:key-AbC123"
BUCKET_ARN = "arn:aws:s3:::flows-bucket"
LOG_GROUP = "/prefect-fargate/test/prefect"


@pytest.fixture(scope="module")
def roles_run() -> Run:
    args = AgentRolesArgs(
        repository_arn=REPO_ARN, log_group_name=LOG_GROUP, secret_arn=SECRET_ARN, bucket_arn=BUCKET_ARN
    )
    return run_pulumi(lambda: AgentRoles("roles", args))


def grants(run: Run, policy_name: str) -> dict[str, set[str]]:
    """action -> resources it is allowed on, from one inline policy."""
    document = run.one("aws:iam/rolePolicy:RolePolicy", policy_name).json_input("policy")
    allowed: dict[str, set[str]] = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            allowed.setdefault(action, set()).update(resources)
    return allowed


def test_execution_role_reaches_only_this_repo_log_group_and_secret(roles_run: Run) -> None:
    assert grants(roles_run, "execution-policy") == {
        "ecr:GetAuthorizationToken": {"*"},  # AWS accepts no resource for it
        "ecr:BatchCheckLayerAvailability": {REPO_ARN},
        "ecr:GetDownloadUrlForLayer": {REPO_ARN},
        "ecr:BatchGetImage": {REPO_ARN},
        "logs:CreateLogStream": {f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{LOG_GROUP}:log-stream:*"},
        "logs:PutLogEvents": {f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{LOG_GROUP}:log-stream:*"},
        "secretsmanager:GetSecretValue": {SECRET_ARN},
    }


def test_an_image_outside_ecr_gets_its_registry_login_and_no_ecr_permission() -> None:
    login = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:registry-login-Xy12Zq"
    args = AgentRolesArgs(
        repository_arn=None,
        registry_credentials_arn=login,
        log_group_name=LOG_GROUP,
        secret_arn=SECRET_ARN,
        bucket_arn=BUCKET_ARN,
    )
    allowed = grants(run_pulumi(lambda: AgentRoles("roles", args)), "execution-policy")
    assert not any(action.startswith("ecr:") for action in allowed)
    assert allowed["secretsmanager:GetSecretValue"] == {SECRET_ARN, login}


def test_task_role_lists_and_reads_the_flow_bucket_only(roles_run: Run) -> None:
    assert grants(roles_run, "task-policy") == {
        "s3:ListBucket": {BUCKET_ARN},
        "s3:GetObject": {f"{BUCKET_ARN}/*"},
    }


def trust_statement(run: Run, role: str) -> dict[str, Any]:
    (statement,) = run.one("aws:iam/role:Role", f"roles-{role}").json_input("assumeRolePolicy")["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    return statement


def test_task_role_trusts_ecs_tasks_of_this_account_only(roles_run: Run) -> None:
    """The confused-deputy conditions AWS documents for task roles (task-iam-roles.html)."""
    assert trust_statement(roles_run, "task")["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:us-east-1:{ACCOUNT}:*"},
    }


def test_execution_role_trust_has_only_what_aws_documents_for_it(roles_run: Run) -> None:
    """task_execution_IAM_role.html documents no condition for the execution role: one ECS does not send
    would keep every task from starting ("unable to assume role")."""
    assert "Condition" not in trust_statement(roles_run, "execution")


def test_no_managed_policies(roles_run: Run) -> None:
    assert roles_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []
    for role in roles_run.of_type("aws:iam/role:Role"):
        inputs: dict[str, Any] = role.plain_inputs
        assert not inputs.get("managedPolicyArns") and not inputs.get("inlinePolicies")
