"""The whole `__main__.py` under mocks: wiring, outputs, the key's secrecy and its rotation."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import API_KEY, BASE_CONFIG, PROJECT, ROOT, STACK, Run, name_values, run_program, strings_in

EXPECTED_OUTPUTS = {
    "imageUri", "repositoryUrl", "clusterName", "serviceName", "taskDefinitionArn", "logGroupName",
    "flowBucketName", "apiKeySecretArn", "workPool", "workPoolType", "prefectApiUrl", "alertTopicArn",
    "dashboardUrl",
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


# -- URNs: existing stacks replace nothing -------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """One RegisterResource call as the engine gets it."""

    urn: str  # as the mock monitor made it (its own short form; see engine_urns)
    type: str
    name: str
    parent: str  # the parent's URN as the mock monitor made it
    alias_specs: tuple[Any, ...]  # pulumi's Alias.Spec messages


# The URNs of a stack deployed before WorkerCluster existed (the program at that commit, run as above):
# every one must still be there or be aliased, or `pulumi up` would replace that resource.
_WORKER = f"urn:pulumi:{STACK}::{PROJECT}::prefect-fargate:index:PrefectWorker"
_BEFORE_BOTH = [
    "$prefect-fargate:ecs:AgentService$aws:cloudwatch/logGroup:LogGroup::prefect-worker-logs",
    "$prefect-fargate:ecs:AgentService$aws:ecs/cluster:Cluster::prefect-worker-cluster",
    "$prefect-fargate:ecs:AgentService$aws:ecs/service:Service::prefect-worker-svc",
    "$prefect-fargate:ecs:AgentService$aws:ecs/taskDefinition:TaskDefinition::prefect-worker-task",
    "$prefect-fargate:ecs:AgentService::prefect-worker",
    "$prefect-fargate:iam:AgentRoles$aws:iam/role:Role::prefect-roles-execution",
    "$prefect-fargate:iam:AgentRoles$aws:iam/role:Role::prefect-roles-task",
    "$prefect-fargate:iam:AgentRoles$aws:iam/rolePolicy:RolePolicy::prefect-roles-execution-policy",
    "$prefect-fargate:iam:AgentRoles::prefect-roles",
    "$prefect-fargate:image:AgentImage$aws:ecr/lifecyclePolicy:LifecyclePolicy::prefect-image-lifecycle",
    "$prefect-fargate:image:AgentImage$aws:ecr/repository:Repository::prefect-image-repo",
    "$prefect-fargate:image:AgentImage$docker:index/image:Image::prefect-image-image",
    "$prefect-fargate:image:AgentImage::prefect-image",
    "$prefect-fargate:network:AgentNetwork$aws:ec2/securityGroup:SecurityGroup::prefect-network-egress-only",
    "$prefect-fargate:network:AgentNetwork::prefect-network",
    "$prefect-fargate:prefect:WorkPool$pulumi-python:dynamic/prefect:WorkPool::prefect-work-pool-pool",
    "$prefect-fargate:prefect:WorkPool::prefect-work-pool",
    "$prefect-fargate:secrets:ApiKeySecret$aws:secretsmanager/secret:Secret::prefect-api-key-secret",
    "$prefect-fargate:secrets:ApiKeySecret$aws:secretsmanager/secretVersion:SecretVersion::prefect-api-key-version",
    "$prefect-fargate:secrets:ApiKeySecret::prefect-api-key",
    "$prefect-fargate:storage:FlowStorage$aws:s3/bucket:Bucket::prefect-flows-bucket",
    "$prefect-fargate:storage:FlowStorage$aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration::prefect-flows-lifecycle",
    "$prefect-fargate:storage:FlowStorage$aws:s3/bucketPolicy:BucketPolicy::prefect-flows-policy",
    "$prefect-fargate:storage:FlowStorage$aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock::prefect-flows-public-access",
    "$prefect-fargate:storage:FlowStorage$aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration::prefect-flows-encryption",
    "$prefect-fargate:storage:FlowStorage$aws:s3/bucketVersioning:BucketVersioning::prefect-flows-versioning",
    "$prefect-fargate:storage:FlowStorage::prefect-flows",
    "::prefect",
]
_BEFORE_PROCESS = [
    "$prefect-fargate:iam:AgentRoles$aws:iam/rolePolicy:RolePolicy::prefect-roles-task-policy",
]
_BEFORE_ECS = [
    "$prefect-fargate:iam:EcsPoolRoles$aws:iam/role:Role::prefect-ecs-pool-flow-run",
    "$prefect-fargate:iam:EcsPoolRoles$aws:iam/rolePolicy:RolePolicy::prefect-ecs-pool-flow-run-policy",
    "$prefect-fargate:iam:EcsPoolRoles$aws:iam/rolePolicy:RolePolicy::prefect-ecs-pool-worker-policy",
    "$prefect-fargate:iam:EcsPoolRoles::prefect-ecs-pool",
]
URNS_BEFORE_WORKER_CLUSTER = {
    "process": {_WORKER + suffix for suffix in _BEFORE_BOTH + _BEFORE_PROCESS},
    "ecs": {_WORKER + suffix for suffix in _BEFORE_BOTH + _BEFORE_ECS},
}


def registrations(config: dict[str, str]) -> list[Registration]:
    """Every resource the program registers with `config`, with its parent and aliases."""
    from pulumi.runtime.mocks import MockMonitor

    seen: list[Registration] = []
    register = MockMonitor.RegisterResource

    def recording(monitor: MockMonitor, request: Any) -> Any:
        response = register(monitor, request)
        specs = tuple(alias.spec for alias in request.aliases if alias.HasField("spec"))
        seen.append(Registration(response.urn, request.type, request.name, request.parent, specs))
        return response

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MockMonitor, "RegisterResource", recording)
        run_program(config)
    return seen


def engine_urns(regs: list[Registration]) -> dict[str, set[str]]:
    """Each resource's URN -> its alias URNs, as the Pulumi engine forms them: the type is the parent's
    qualified type, '$', the resource's type, with the root stack left out (sdk/go/common/resource/urn.go).
    An alias spec names the old parent by the URN `pulumi.create_urn` made for it (its parent's URN up to
    the last '::', then '$', type, '::', name); providers add aliases of their own (renamed types)."""
    by_urn = {r.urn: r for r in regs}

    def qualified_type(r: Registration | None) -> str:
        if r is None or r.type == "pulumi:pulumi:Stack":
            return ""
        parent = qualified_type(by_urn.get(r.parent))
        return f"{parent}${r.type}" if parent else r.type

    def urn(parent: Registration | None, type_: str, name: str) -> str:
        parent_type = qualified_type(parent)
        return f"urn:pulumi:{STACK}::{PROJECT}::{f'{parent_type}$' if parent_type else ''}{type_}::{name}"

    by_sdk_urn = {f"{r.parent[: r.parent.rfind('::')]}${r.type}::{r.name}": r for r in regs if r.parent}
    found: dict[str, set[str]] = {}
    for r in regs:
        if r.type == "pulumi:pulumi:Stack":
            continue
        aliases = set()
        for spec in r.alias_specs:
            parent = None if spec.noParent else by_sdk_urn[spec.parentUrn] if spec.parentUrn else by_urn.get(r.parent)
            aliases.add(urn(parent, spec.type or r.type, spec.name or r.name))
        found[urn(by_urn.get(r.parent), r.type, r.name)] = aliases
    return found


@pytest.mark.parametrize("pool_type", ["process", "ecs"])
def test_every_resource_of_an_existing_stack_keeps_its_urn_or_is_aliased_to_it(pool_type: str) -> None:
    """Stacks deployed before WorkerCluster hold the cluster and log group under AgentService: a URN that
    neither exists nor is aliased would make `pulumi up` delete that resource and create a new one."""
    before = URNS_BEFORE_WORKER_CLUSTER[pool_type]
    now = engine_urns(registrations({**BASE_CONFIG, "workPoolType": pool_type}))
    claimed = set(now) | set().union(*now.values())
    assert before - claimed == set()
    # A moved resource takes over exactly one old URN, and none that a resource still has.
    moved = [aliases & before for urn, aliases in now.items() if urn not in before]
    assert all(len(old) <= 1 for old in moved)
    assert not set().union(*moved) & set(now)
    assert sum(len(old) for old in moved) == len(set().union(*moved))


def test_python_before_3_11_stops_with_one_line() -> None:
    """`__main__.py` under CPython 3.10 (which has none of the program's packages): one line, no traceback."""
    # (a pyenv shim on PATH exists for every installed version but runs only the selected ones)
    candidates = [*Path.home().glob(".pyenv/versions/3.10.*/bin/python3.10"), shutil.which("python3.10")]
    python310 = next((c for c in candidates if c and subprocess.run([str(c), "-c", ""]).returncode == 0), None)
    if python310 is None:
        pytest.skip("no CPython 3.10 on this machine")
    result = subprocess.run([str(python310), "__main__.py"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("prefect-fargate needs Python 3.11 to 3.13, not 3.10.")
