"""What the program renders, checked against AWS's own API shapes and policy grammar (in-process).

- botocore validates every call's parameters against the service model (types, required fields,
  enums) before moto sees it.
- IAM policy grammar: every trust, identity and resource policy (bucket, KMS key, SNS topic, SQS
  queue, CloudWatch Logs resource policy), for both pool types, goes through cfn-lint's IAM policy
  schemas and action list and moto's IAM policy validator (`policy_problems`).
  moto's own CreateRole and PutBucketPolicy store a document without checking it.
- moto's ECS checks that a task definition's containers have a name, an image and memory, and that a
  service's subnets and security groups exist; it does not check the Fargate cpu/memory pair (it
  takes cpu 300): test_config checks those against AWS's table.
- moto's Secrets Manager reads a version back by id; moto's ECR validates lifecycle policy rules.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import API_KEY, BASE_CONFIG, REGION, Run, run_program
from moto import mock_aws

from components.api_key_secret import version_pinned_value_from


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")


# Every policy document the program registers: the resource input holding it, the CloudFormation
# resource type and property that take the same document (cfn-lint checks it there), and the other
# properties CloudFormation requires next to it ("<name>" is filled with the resource's own name).
# CloudFormation takes a Logs resource policy's document as a JSON string, the others as objects.
POLICY_DOCUMENTS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "aws:iam/role:Role": ("assumeRolePolicy", "AWS::IAM::Role", "AssumeRolePolicyDocument", {}),
    "aws:iam/rolePolicy:RolePolicy": (
        "policy", "AWS::IAM::RolePolicy", "PolicyDocument", {"PolicyName": "<name>", "RoleName": "<name>"}
    ),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy", "AWS::S3::BucketPolicy", "PolicyDocument", {"Bucket": "<name>"}),
    "aws:kms/key:Key": ("policy", "AWS::KMS::Key", "KeyPolicy", {}),
    "aws:sns/topicPolicy:TopicPolicy": ("policy", "AWS::SNS::TopicPolicy", "PolicyDocument", {"Topics": ["<name>"]}),
    "aws:sqs/queuePolicy:QueuePolicy": ("policy", "AWS::SQS::QueuePolicy", "PolicyDocument", {"Queues": ["<name>"]}),
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": (
        "policyDocument", "AWS::Logs::ResourcePolicy", "PolicyDocument", {"PolicyName": "<name>"}
    ),
}  # fmt: skip
STRING_DOCUMENTS = {"AWS::Logs::ResourcePolicy"}
# Configs whose policies differ: the process pool (the worker reads the bucket), the ecs pool (the
# worker's ECS policy, the flow-run role), and a self-hosted server without auth (no secret to read).
POLICY_CONFIGS = {
    "process": BASE_CONFIG,
    "ecs": {**BASE_CONFIG, "workPoolType": "ecs"},
    "open-server": {"prefectApiUrl": "http://prefect.internal:4200/api"},
    "scaled": {**BASE_CONFIG, "minWorkers": "0", "maxWorkers": "2"},
    # The stack controller in the VPC: its role manages its network interfaces there (stack_controller.py).
    "controller-in-vpc": {
        "prefectApiUrl": "http://prefect.internal:4200/api",
        "workPoolType": "ecs",
        "vpcId": "vpc-0123456789abcdef0",
        "subnetIds": '["subnet-0123456789abcdef0"]',
        "assignPublicIp": "false",
        "controllerInVpc": "true",
    },
}


def policy_problems(documents: dict[str, tuple[str, str]]) -> list[str]:
    """What the policy checks find wrong in {name: (type token, JSON document)}, one line each.

    cfn-lint (AWS's CloudFormation linter) validates each document against its IAM policy schemas
    (identity, trust and resource-based: Version, Effect, Action/Resource/Principal, condition
    operators, ARN shapes) and every action name against its list of service actions (W3037).
    It takes an empty `Statement` list; moto's IAM validator, which moto's PutRolePolicy and
    UpdateAssumeRolePolicy run (moto/iam/models.py), refuses that, so both run on every document.
    """
    from cfnlint.api import ManualArgs, lint
    from moto.iam.exceptions import MalformedPolicyDocument
    from moto.iam.policy_validation import IAMPolicyDocumentValidator, IAMTrustPolicyDocumentValidator

    problems: list[str] = []
    resources: dict[str, Any] = {}
    logical_names: dict[str, str] = {}
    for name, (typ, document) in documents.items():
        _, cfn_type, cfn_property, required = POLICY_DOCUMENTS[typ]
        logical = re.sub(r"[^A-Za-z0-9]", "", name.title())
        logical_names[logical] = name
        filled = json.loads(json.dumps(required).replace("<name>", logical))
        properties = {**filled, cfn_property: document if cfn_type in STRING_DOCUMENTS else json.loads(document)}
        resources[logical] = {"Type": cfn_type, "Properties": properties}
        validator = IAMTrustPolicyDocumentValidator if typ == "aws:iam/role:Role" else IAMPolicyDocumentValidator
        try:
            validator(document).validate()
        except MalformedPolicyDocument as exc:
            problems.append(f"{name}: moto: {exc.message}")
    template = json.dumps({"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources})
    for match in lint(template, config=ManualArgs(regions=[REGION])):
        logical = match.path[1] if len(match.path) > 1 else "?"
        problems.append(f"{logical_names.get(logical, logical)}: cfn-lint {match.rule.id}: {match.message}")
    return problems


def registered_policies(run: Run) -> dict[str, tuple[str, str]]:
    """Every policy document in the run (any JSON input with a `Statement`), by resource name; fails on
    one that `POLICY_DOCUMENTS` does not know how to check."""
    documents = {}
    for resource in run.resources:
        for key, value in resource.plain_inputs.items():
            try:
                parsed = json.loads(value) if isinstance(value, str) else None
            except ValueError:
                continue
            if isinstance(parsed, dict) and "Statement" in parsed:
                assert POLICY_DOCUMENTS.get(resource.typ, ("",))[0] == key, f"unchecked policy {resource.typ}.{key}"
                documents[resource.name] = (resource.typ, value)
    return documents


@functools.cache
def case_policies(case: str) -> dict[str, tuple[str, str]]:
    """The policies of POLICY_CONFIGS[case], rendered once for the checks below."""
    return registered_policies(run_program(POLICY_CONFIGS[case]))


@pytest.mark.parametrize("case", POLICY_CONFIGS)
def test_every_policy_document_is_valid(case: str) -> None:
    documents = case_policies(case)
    kinds = {typ for typ, _ in documents.values()}
    assert kinds >= set(list(POLICY_DOCUMENTS)[:3]), "the roles' and the bucket's policies are in this run"
    assert policy_problems(documents) == []


# Checked on documents the program prints rather than registers: the key policy statements a user adds to their own
# key (config kmsKeyArn; tests/test_kms.py runs them through `policy_problems`). The stack creates no key.
PRINTED_ONLY = {"aws:kms/key:Key"}


def test_every_kind_of_policy_document_is_registered_by_some_config() -> None:
    """POLICY_DOCUMENTS lists no kind that no run registers (its check would never run) but the printed one."""
    kinds = {typ for config in POLICY_CONFIGS.values() for typ, _ in registered_policies(run_program(config)).values()}
    assert kinds == set(POLICY_DOCUMENTS) - PRINTED_ONLY


def resource_types_by_action() -> dict[str, list[str]]:
    """`service:action` (lowercase) -> the resource types AWS lets a statement name for it (none: it takes
    only "*"), from cfn-lint's copy of AWS's Service Authorization Reference (data/AdditionalSpecs/Policies.json)."""
    import cfnlint.data.AdditionalSpecs

    data = json.loads((Path(cfnlint.data.AdditionalSpecs.__file__).parent / "Policies.json").read_text())
    return {
        f"{service}:{action}": spec.get("Resources", [])
        for service, definition in data.items()
        if isinstance(definition, dict) and "Actions" in definition
        for action, spec in definition["Actions"].items()
    }


# Actions whose resource type is optional and absent from the calls the stack makes, scoped by a condition
# instead: PutMetricData lists a `dataset` resource, but publishing to a namespace names none, and AWS's own
# example scopes it with "Resource": "*" and `cloudwatch:namespace` (CloudWatch user guide, "Using condition
# keys to limit access to CloudWatch namespaces").
SCOPED_BY_CONDITION = {"cloudwatch:putmetricdata": "cloudwatch:namespace"}


def _condition_keys(statement: dict[str, Any]) -> set[str]:
    return {key.lower() for operator in statement.get("Condition", {}).values() for key in operator}


def scope_problems(documents: dict[str, tuple[str, str]], types: dict[str, list[str]]) -> list[str]:
    """Identity-policy statements whose resource AWS would not honour as written: "*" on an action that
    takes a resource type (it could be scoped; unless SCOPED_BY_CONDITION's key conditions it), or an ARN on
    one that takes none (AWS then denies it)."""
    problems = []
    for name, (typ, document) in documents.items():
        if typ != "aws:iam/rolePolicy:RolePolicy":  # trust and resource policies: "*" means the resource itself
            continue
        for statement in json.loads(document)["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for pattern in actions:
                matched = [action for action in types if fnmatch.fnmatchcase(action, pattern.lower())]
                assert matched, f"{name}: {pattern} names no action AWS knows"
                for action in matched:
                    if SCOPED_BY_CONDITION.get(action) in _condition_keys(statement) and resources == ["*"]:
                        continue
                    if resources == ["*"] and types[action]:
                        problems.append(f"{name}: {action} on * though AWS scopes it to {types[action]}")
                    elif resources != ["*"] and not types[action]:
                        problems.append(f"{name}: {action} on {resources} though AWS takes only * for it")
    return problems


@pytest.mark.parametrize("case", POLICY_CONFIGS)
def test_a_wildcard_resource_only_where_aws_takes_nothing_narrower(case: str) -> None:
    assert scope_problems(case_policies(case), resource_types_by_action()) == []


def test_the_scope_check_fails_both_ways() -> None:
    def role_policy(action: str, resource: str) -> tuple[str, str]:
        statement = {"Effect": "Allow", "Action": action, "Resource": resource}
        return "aws:iam/rolePolicy:RolePolicy", json.dumps({"Version": "2012-10-17", "Statement": [statement]})

    types = resource_types_by_action()
    problems = scope_problems(
        {
            "scopable-on-star": role_policy("ecs:RunTask", "*"),
            "unscopable-on-arn": role_policy("ecr:GetAuthorizationToken", "arn:aws:ecr:us-east-1:1:repository/r"),
            "fine": role_policy("ec2:DescribeVpcs", "*"),
            "metrics-anywhere": role_policy("cloudwatch:PutMetricData", "*"),
        },
        types,
    )
    assert [problem.split(":", 1)[0] for problem in problems] == [
        "scopable-on-star", "unscopable-on-arn", "metrics-anywhere"
    ]  # fmt: skip
    namespaced = {**json.loads(role_policy("cloudwatch:PutMetricData", "*")[1])["Statement"][0],
                  "Condition": {"StringEquals": {"cloudwatch:namespace": "prefect-fargate-test"}}}  # fmt: skip
    document = json.dumps({"Version": "2012-10-17", "Statement": [namespaced]})
    assert scope_problems({"one-namespace": ("aws:iam/rolePolicy:RolePolicy", document)}, types) == []


# parliament's findings about a statement's conditions: an operator of the wrong type for its key (Bool on the
# String key ecs:privileged, say), an unknown operator, or a key the action does not have.
CONDITION_FINDINGS = {
    "MISMATCHED_TYPE",
    "MISMATCHED_TYPE_BUT_USABLE",
    "MISMATCHED_TYPE_OPERATION_TO_NULL",
    "UNKNOWN_OPERATOR",
    "UNKNOWN_CONDITION_FOR_ACTION",
}


def condition_problems(documents: dict[str, tuple[str, str]]) -> list[str]:
    """What parliament (Duo Labs' IAM linter, with its copy of AWS's Service Authorization Reference: each
    condition key's type and the actions that have it) finds wrong in the documents' conditions."""
    from parliament import analyze_policy_string

    return [
        f"{name}: {finding.issue}: {finding.detail}"
        for name, (_, document) in documents.items()
        for finding in analyze_policy_string(document, include_community_auditors=False).findings
        if finding.issue in CONDITION_FINDINGS
    ]


@pytest.mark.parametrize("case", POLICY_CONFIGS)
def test_every_condition_uses_an_operator_of_its_keys_type(case: str) -> None:
    assert condition_problems(case_policies(case)) == []


def test_the_condition_check_finds_a_wrong_type_and_a_key_the_action_lacks() -> None:
    def register(condition: dict[str, Any], action: str = "ecs:RegisterTaskDefinition") -> tuple[str, str]:
        statement = {"Effect": "Allow", "Action": action, "Resource": "*", "Condition": condition}
        return "aws:iam/rolePolicy:RolePolicy", json.dumps({"Version": "2012-10-17", "Statement": [statement]})

    problems = condition_problems(
        {
            "string-key-as-bool": register({"BoolIfExists": {"ecs:privileged": "false"}}),
            "string-key-as-string": register({"StringEqualsIfExists": {"ecs:privileged": "false"}}),
            "not-a-key-of-run-task": register({"StringEqualsIfExists": {"ecs:privileged": "false"}}, "ecs:RunTask"),
        }
    )
    assert [problem.split(":")[:2] for problem in problems] == [
        ["string-key-as-bool", " MISMATCHED_TYPE"],
        ["not-a-key-of-run-task", " UNKNOWN_CONDITION_FOR_ACTION"],
    ]


TRUST = {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
READ = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
DENY = {**READ, "Effect": "Deny", "Principal": "*"}
BROKEN = {
    "effect-maybe": lambda statement: [{**statement, "Effect": "Maybe"}],
    "no-statement": lambda statement: [],
    "misspelt-action": lambda statement: [{**statement, "Action": "s3:GetObjekt"}],
}


KINDS = {
    "trust": ("aws:iam/role:Role", TRUST),
    "identity": ("aws:iam/rolePolicy:RolePolicy", READ),
    "bucket": ("aws:s3/bucketPolicy:BucketPolicy", DENY),
}


def test_the_policy_check_refuses_broken_documents() -> None:
    """The check above can fail, on each kind of document (moto's CreateRole and S3 accept all of these)."""

    def document(statements: list[dict[str, Any]]) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": statements})

    assert policy_problems({kind: (typ, document([statement])) for kind, (typ, statement) in KINDS.items()}) == []
    broken = {
        f"{kind}-{breakage}": (typ, document(BROKEN[breakage](statement)))
        for kind, (typ, statement) in KINDS.items()
        for breakage in BROKEN
    }
    flagged = {line.split(":", 1)[0] for line in policy_problems(broken)}
    assert flagged == set(broken)


def test_task_definition_and_service_register_with_ecs(aws: None, default_run: Run) -> None:
    ecs = client("ecs")
    task = default_run.one("aws:ecs/taskDefinition:TaskDefinition").plain_inputs
    registered = ecs.register_task_definition(
        family=task["family"],
        containerDefinitions=default_run.one("aws:ecs/taskDefinition:TaskDefinition").json_input(
            "containerDefinitions"
        ),
        cpu=task["cpu"],
        memory=task["memory"],
        networkMode=task["networkMode"],
        requiresCompatibilities=task["requiresCompatibilities"],
        executionRoleArn=task["executionRoleArn"],
        taskRoleArn=task["taskRoleArn"],
        runtimePlatform=task["runtimePlatform"],
    )["taskDefinition"]
    assert registered["containerDefinitions"][0]["secrets"] == default_run.container()["secrets"]

    service = default_run.one("aws:ecs/service:Service").plain_inputs
    network = service["networkConfiguration"]
    # moto checks that subnets and groups exist: stand up as many as the program names.
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"]
        for i, _ in enumerate(network["subnets"])
    ]
    groups = [
        ec2.create_security_group(GroupName=f"g{i}", Description="worker", VpcId=vpc)["GroupId"]
        for i, _ in enumerate(network["securityGroups"])
    ]
    ecs.create_cluster(clusterName="prefect-worker-cluster")
    created = ecs.create_service(
        cluster="prefect-worker-cluster",
        serviceName="worker",
        taskDefinition=registered["taskDefinitionArn"],
        desiredCount=int(service["desiredCount"]),  # Pulumi carries numbers as floats
        launchType=service["launchType"],
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": subnets,
            "securityGroups": groups,
            "assignPublicIp": "ENABLED" if network["assignPublicIp"] else "DISABLED",
        }},
        deploymentConfiguration={"deploymentCircuitBreaker": service["deploymentCircuitBreaker"]},
        propagateTags=service["propagateTags"],
        enableECSManagedTags=service["enableEcsManagedTags"],
    )["service"]  # fmt: skip
    assert created["desiredCount"] == service["desiredCount"]


def test_version_pinned_value_from_addresses_the_stored_version(aws: None) -> None:
    """ECS's `<arn>:<json-key>:<stage>:<version-id>` form, parsed back, reads that very version."""
    secrets = client("secretsmanager")
    arn = secrets.create_secret(Name="prefect-api-key")["ARN"]
    first = secrets.put_secret_value(SecretId=arn, SecretString=API_KEY)["VersionId"]
    secrets.put_secret_value(SecretId=arn, SecretString="pnu_rotated")
    value_from = version_pinned_value_from(arn, first)
    secret_arn, json_key, stage, version = value_from.rsplit(":", 3)
    assert (secret_arn, json_key, stage) == (arn, "", "")
    assert secrets.get_secret_value(SecretId=secret_arn, VersionId=version)["SecretString"] == API_KEY


def test_ecr_lifecycle_policy_is_valid(aws: None, default_run: Run) -> None:
    ecr = client("ecr")
    ecr.create_repository(repositoryName="agent")
    policy = default_run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").plain_inputs["policy"]
    ecr.put_lifecycle_policy(repositoryName="agent", lifecyclePolicyText=policy)
