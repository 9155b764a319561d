"""The whole `__main__.py` under mocks: wiring, outputs, the key's secrecy and its rotation."""

from __future__ import annotations

import json

from conftest import API_KEY, BASE_CONFIG, Run, name_values, run_program, strings_in

EXPECTED_OUTPUTS = {
    "imageUri", "repositoryUrl", "clusterName", "serviceName", "taskDefinitionArn", "logGroupName",
    "flowBucketName", "apiKeySecretArn", "workPool", "workPoolType", "prefectApiUrl",
}  # fmt: skip


def test_stack_outputs(default_run: Run) -> None:
    outputs = default_run.outputs
    assert set(outputs) == EXPECTED_OUTPUTS
    assert outputs["imageUri"].startswith(outputs["repositoryUrl"] + "@sha256:")
    assert outputs["flowBucketName"] == default_run.one("aws:s3/bucket:Bucket").outputs["bucket"]
    assert outputs["apiKeySecretArn"] == default_run.one("aws:secretsmanager/secret:Secret").outputs["arn"]
    assert outputs["workPool"] == "fargate-pool"
    assert outputs["prefectApiUrl"].startswith("https://api.prefect.cloud/api/accounts/")


def test_task_runs_the_digest_pinned_image_with_the_stacks_resources(default_run: Run) -> None:
    container = default_run.container()
    assert container["image"] == default_run.outputs["imageUri"]
    env = name_values(container["environment"])
    assert env["PREFECT_API_URL"] == default_run.outputs["prefectApiUrl"]
    secret = default_run.one("aws:secretsmanager/secret:Secret").outputs["arn"]
    version = default_run.one("aws:secretsmanager/secretVersion:SecretVersion").outputs["versionId"]
    assert container["secrets"] == [{"name": "PREFECT_API_KEY", "valueFrom": f"{secret}:::{version}"}]
    task = default_run.one("aws:ecs/taskDefinition:TaskDefinition").plain_inputs
    roles = {r.name.rsplit("-", 1)[1]: r.outputs["arn"] for r in default_run.of_type("aws:iam/role:Role")}
    assert task["executionRoleArn"] == roles["execution"]
    assert task["taskRoleArn"] == roles["task"]
    assert container["logConfiguration"]["options"]["awslogs-group"] == default_run.outputs["logGroupName"]


def test_default_network_is_the_default_vpc_with_a_new_egress_only_group(default_run: Run) -> None:
    service = default_run.one("aws:ecs/service:Service").plain_inputs
    group = default_run.one("aws:ec2/securityGroup:SecurityGroup")
    assert service["networkConfiguration"]["securityGroups"] == [group.id]
    assert group.plain_inputs.get("ingress") in (None, [])
    assert service["networkConfiguration"]["assignPublicIp"] is True
    assert service["networkConfiguration"]["subnets"] == ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]
    invoked = {token: args for token, args in default_run.mocks.invokes}
    assert invoked["aws:ec2/getVpc:getVpc"]["default"] is True


def test_key_is_in_no_input_but_the_secret_version_and_in_no_output(default_run: Run) -> None:
    holders = {
        (r.typ, key)
        for r in default_run.resources
        for key, value in r.plain_inputs.items()
        if any(API_KEY in s for s in strings_in(value))
    }
    # The secret's value, and the Prefect resources that call the Prefect API with it (secrets, see below).
    assert holders == {
        ("aws:secretsmanager/secretVersion:SecretVersion", "secretString"),
        ("pulumi-python:dynamic/prefect:WorkPool", "api_key"),
        ("pulumi-python:dynamic/prefect:Automation", "api_key"),
    }
    assert not any(API_KEY in s for s in strings_in(default_run.outputs))
    assert API_KEY not in json.dumps(default_run.outputs)


def test_key_reaches_the_secret_version_as_a_pulumi_secret(default_run: Run) -> None:
    from pulumi.runtime import rpc

    version = default_run.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert version.inputs["secretString"][rpc._special_sig_key] == rpc._special_secret_sig
    pool = default_run.one("pulumi-python:dynamic/prefect:WorkPool")
    assert pool.inputs["api_key"][rpc._special_sig_key] == rpc._special_secret_sig
    for automation in default_run.of_type("pulumi-python:dynamic/prefect:Automation"):
        assert automation.inputs["api_key"][rpc._special_sig_key] == rpc._special_secret_sig


def test_rotating_the_key_rolls_the_task_definition(default_run: Run) -> None:
    rotated = run_program({**BASE_CONFIG, "prefectApiKey": "pnu_RotatedKey9876543210"})
    before, after = default_run.container(), rotated.container()
    assert before["secrets"] != after["secrets"]
    assert {k: v for k, v in before.items() if k != "secrets"} == {k: v for k, v in after.items() if k != "secrets"}
    assert not any("pnu_RotatedKey9876543210" in s for s in strings_in(after))


def test_same_key_keeps_the_task_definition(default_run: Run) -> None:
    """A `pulumi up` with nothing changed must not roll the workers."""
    assert run_program().container() == default_run.container()
