"""What the program renders is accepted by the AWS APIs' own shapes and validators (moto, in-process).

botocore validates every parameter against the service model before moto sees it; moto then
validates IAM policy and trust documents and ECR lifecycle policies as AWS does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from conftest import API_KEY, REGION, Run
from moto import mock_aws

from components.api_key_secret import version_pinned_value_from


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")


def test_iam_roles_and_policies_are_valid_documents(aws: None, default_run: Run) -> None:
    iam = client("iam")
    for role in default_run.of_type("aws:iam/role:Role"):
        iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=role.plain_inputs["assumeRolePolicy"])
    for policy in default_run.of_type("aws:iam/rolePolicy:RolePolicy"):
        role_name = policy.plain_inputs["role"].removesuffix("-id")
        iam.put_role_policy(RoleName=role_name, PolicyName=policy.name, PolicyDocument=policy.plain_inputs["policy"])
        stored = iam.get_role_policy(RoleName=role_name, PolicyName=policy.name)["PolicyDocument"]
        assert stored == policy.json_input("policy")


def test_an_invalid_policy_would_be_rejected(aws: None) -> None:
    """The check above can fail: moto refuses a document AWS would refuse."""
    iam = client("iam")
    iam.create_role(RoleName="r", AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}')
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.put_role_policy(RoleName="r", PolicyName="p", PolicyDocument='{"Statement": [{"Effect": "Allow"}]}')


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


def test_bucket_policy_is_accepted(aws: None, default_run: Run) -> None:
    s3 = client("s3")
    bucket = default_run.one("aws:s3/bucket:Bucket").outputs["bucket"]
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_policy(
        Bucket=bucket, Policy=default_run.one("aws:s3/bucketPolicy:BucketPolicy").plain_inputs["policy"]
    )
