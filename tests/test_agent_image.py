"""AgentImage: an ECR repository that stays bounded, and an image built for the task's platform from inputs
that name the same build wherever the project is checked out, with one Prefect version throughout."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pulumi
import pytest
import yaml
from conftest import (
    ACCOUNT,
    API_KEY,
    BASE_CONFIG,
    REGION,
    ROOT,
    RecordingMocks,
    Run,
    moto_ecs_network,
    record_aws_calls,
    run_program,
    run_pulumi,
)
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from test_agent_roles import grants
from test_aws_shapes import policy_problems, registered_policies
from test_ecs_pool import _job_configuration

from components.agent_image import (
    DOCKERFILE,
    FLOW_REQUIREMENTS,
    IMAGE_REQUIREMENTS,
    KEEP_IMAGES,
    KEEP_OTHER_IMAGES,
    AgentImage,
    AgentImageArgs,
    build_spec,
    build_tag,
    context_files,
    pinned_version,
)

PREFECT = pinned_version("prefect")


@pytest.fixture(scope="module")
def image_run() -> Run:
    return run_pulumi(lambda: AgentImage("agent", AgentImageArgs(platform="linux/arm64")))


def test_repository_scans_on_push_and_keeps_tags_immutable(image_run: Run) -> None:
    repo = image_run.one("aws:ecr/repository:Repository").plain_inputs
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["imageTagMutability"] == "IMMUTABLE"


def expired(policy: dict[str, Any], pushed: list[str]) -> set[str]:
    """The tags ECR's lifecycle expires from images pushed in this order (oldest first), by the evaluation rules
    of the ECR user guide ("Lifecycle policy evaluation rules"): rules in priority order; `imageCountMoreThan`
    sorts the rule's images newest first and expires those past the count; an image that matches a higher
    priority rule's tag selection is never expired by a lower one, which still counts it."""
    gone: set[str] = set()
    claimed: set[str] = set()
    for rule in sorted(policy["rules"], key=lambda r: r["rulePriority"]):
        selection = rule["selection"]
        prefixes = selection.get("tagPrefixList", [])
        matches = [tag for tag in pushed if selection["tagStatus"] == "any" or tag.startswith(tuple(prefixes))]
        past = list(reversed(matches))[selection["countNumber"] :]
        gone |= {tag for tag in past if tag not in claimed}
        claimed |= set(matches)
    return gone


def test_the_lifecycle_keeps_the_running_build_two_before_it_and_hand_pushed_images_for_a_while(image_run: Run) -> None:
    policy = json.loads(image_run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").plain_inputs["policy"])
    builds = [f"prefect-{PREFECT}-{i:032x}" for i in range(6)]
    # Only the stack's builds: the newest KEEP_IMAGES stay (the one running and the rollback targets).
    assert expired(policy, builds) == set(builds[:-KEEP_IMAGES]) and KEEP_IMAGES == 3
    # A dozen images pushed by hand after the last build (docs/flows.md) never expire a build that is kept...
    by_hand = [f"etl-{i}" for i in range(12)]
    gone = expired(policy, [*builds, *by_hand])
    assert not gone & set(builds[-KEEP_IMAGES:])
    # ...and go themselves once KEEP_OTHER_IMAGES newer images of any kind exist.
    assert gone - set(builds) == set(by_hand[: len(by_hand) - KEEP_OTHER_IMAGES]) and KEEP_OTHER_IMAGES == 10
    # Every build the stack tags starts with the protected prefix.
    assert build_tag(AgentImageArgs(platform="linux/amd64")).startswith(
        tuple(policy["rules"][0]["selection"]["tagPrefixList"])
    )


def test_image_is_built_for_the_platform_on_the_pinned_prefect_and_pushed_to_the_repo(image_run: Run) -> None:
    image = image_run.one("docker:index/image:Image").plain_inputs
    repo = image_run.one("aws:ecr/repository:Repository").outputs
    # Resolved as pulumi-docker does, against the project directory (where `pulumi up` runs the program).
    assert (ROOT / image["build"]["context"]).resolve() == ROOT
    assert (ROOT / image["build"]["dockerfile"]).is_file()
    assert image["build"]["platform"] == "linux/arm64"
    assert image["build"]["args"] == {"PREFECT_VERSION": PREFECT}
    assert image["imageName"] == f"{repo['repositoryUrl']}:{build_tag(AgentImageArgs(platform='linux/arm64'))}"
    assert image["registry"]["server"] == repo["repositoryUrl"]
    assert image.get("skipPush") in (None, False)


def test_registry_password_is_kept_secret(image_run: Run) -> None:
    from pulumi.runtime import rpc

    registry = image_run.one("docker:index/image:Image").inputs["registry"]  # the password makes it all secret
    assert registry[rpc._special_sig_key] == rpc._special_secret_sig
    assert registry["value"]["password"] == "ecr-token"


def _image_inputs_from(checkout: Path) -> dict[str, object]:
    """The docker Image's inputs when the whole program runs from `checkout` (its own interpreter, cwd and imports)."""
    code = (
        "import json, sys; sys.path[:0] = ['.', 'tests']; from conftest import run_program; "
        "print(json.dumps(run_program().one('docker:index/image:Image').plain_inputs))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow  # runs the program twice in fresh interpreters from two copies of the project
def test_two_checkout_locations_render_the_same_image_inputs(tmp_path: Path) -> None:
    """pulumi-docker diffs `context` and `dockerfile` as strings: CI and a laptop must not rebuild and roll."""
    ignore = shutil.ignore_patterns(".git", "venv", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache")
    checkouts = [tmp_path / "ci" / "prefect-fargate", tmp_path / "laptop" / "src" / "infra"]
    for checkout in checkouts:
        shutil.copytree(ROOT, checkout, ignore=ignore)
    first, second = (_image_inputs_from(checkout) for checkout in checkouts)
    assert first == second
    assert str(tmp_path) not in json.dumps(first)
    for checkout in checkouts:  # and each names files that exist there
        assert (checkout / first["build"]["dockerfile"]).is_file()  # type: ignore[index]


def test_docker_gets_only_the_files_the_dockerfile_copies() -> None:
    """Little is sent (the requirement files and the worker's supervisor), and only these files (and the
    Dockerfile) make pulumi-docker's context hash change."""
    copied = {
        line.split()[1] for line in (ROOT / DOCKERFILE).read_text().splitlines() if line.startswith(("COPY ", "ADD "))
    }
    assert copied == {
        IMAGE_REQUIREMENTS, FLOW_REQUIREMENTS, "agent_image/worker_supervisor.py", "agent_image/task_protection.py"
    }  # fmt: skip
    # Docker also sends the Dockerfile and .dockerignore, whatever the patterns say.
    assert set(context_files()) == copied | {DOCKERFILE, ".dockerignore"}
    # pulumi-docker and Docker would prefer a <Dockerfile>.dockerignore (getIgnorePatterns); there is none.
    assert not (ROOT / f"{DOCKERFILE}.dockerignore").exists()


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def test_one_prefect_version_everywhere() -> None:
    """requirements.txt's pin is the only Prefect version: nothing else pins another, and prefect-aws accepts it."""
    version = Version(PREFECT)
    for path in [*ROOT.glob("requirements*.txt"), *ROOT.glob("*/requirements.txt")]:
        for requirement in _requirements(path):
            if canonicalize_name(requirement.name) == "prefect":
                assert version in requirement.specifier, f"{path.relative_to(ROOT)}: {requirement}"
    assert importlib.metadata.version("prefect") == PREFECT  # what the tests and `pulumi up` run
    prefect_aws = Requirement(f"prefect-aws=={pinned_version('prefect-aws', ROOT / IMAGE_REQUIREMENTS)}")
    assert importlib.metadata.version("prefect-aws") in prefect_aws.specifier
    (needs,) = [
        Requirement(text)
        for text in importlib.metadata.requires("prefect-aws") or []
        if canonicalize_name(Requirement(text).name) == "prefect" and Requirement(text).marker is None
    ]
    assert version in needs.specifier, f"prefect-aws {prefect_aws.specifier} needs {needs}"
    dockerfile = (ROOT / DOCKERFILE).read_text()
    assert "ARG PREFECT_VERSION\n" in dockerfile  # no default of its own: the program passes the pin
    assert "prefect-version" not in yaml.safe_load((ROOT / "flows" / "prefect.yaml").read_text())


# -- The tag: a hash of the build inputs -----------------------------------------------------------------------

ARGS = AgentImageArgs(platform="linux/amd64")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the files the image is built from, in the same layout (enough for `build_tag`)."""
    for name in [*context_files(), "README.md"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def test_unchanged_inputs_keep_the_tag_and_the_image_inputs(checkout: Path) -> None:
    """Same tag, and inputs equal to the last deployment's: pulumi-docker's Diff finds nothing, so it builds and
    pushes nothing (the repository's immutable tags are never pushed twice)."""
    assert build_tag(ARGS, checkout) == build_tag(ARGS, ROOT)
    first, second = (
        run_pulumi(lambda: AgentImage("agent", ARGS)).one("docker:index/image:Image").plain_inputs for _ in range(2)
    )
    assert first == second
    assert first["imageName"].endswith(f":{build_tag(ARGS)}")


@pytest.mark.parametrize(
    "change",
    ["flows/requirements.txt", "agent_image/requirements.txt", "agent_image/Dockerfile", ".dockerignore"],
)
def test_a_changed_file_docker_is_sent_gives_a_new_tag(checkout: Path, change: str) -> None:
    before = build_tag(ARGS, checkout)
    with (checkout / change).open("a") as file:
        file.write("\n# changed\n")
    assert build_tag(ARGS, checkout) != before


def test_a_mode_change_gives_a_new_tag(checkout: Path) -> None:
    """pulumi-docker's context hash includes each file's mode: so must the tag, or a chmod would rebuild and push
    an existing tag, which the immutable repository refuses."""
    before = build_tag(ARGS, checkout)
    (checkout / FLOW_REQUIREMENTS).chmod(0o755)
    assert build_tag(ARGS, checkout) != before


def test_a_new_file_docker_is_not_sent_keeps_the_tag(checkout: Path) -> None:
    before = build_tag(ARGS, checkout)
    (checkout / "README.md").write_text("edited")
    (checkout / "flows" / "new_flow.py").write_text("print('hi')")
    assert build_tag(ARGS, checkout) == before


@pytest.mark.parametrize(
    "other", [dataclasses.replace(ARGS, platform="linux/arm64"), dataclasses.replace(ARGS, prefect_version="3.9.2")]
)
def test_other_build_args_or_platform_give_a_new_tag(other: AgentImageArgs) -> None:
    assert build_spec(other) != build_spec(ARGS)
    assert build_tag(other) != build_tag(ARGS)


# -- A given image (config workerImage): built by your pipeline, nothing built or pushed here ------------------

DIGEST = "sha256:" + "0123456789abcdef" * 4
OTHER_ACCOUNT = "210987654321"
ECR_IMAGE = f"{OTHER_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/team/prefect-worker@{DIGEST}"
GHCR_IMAGE = f"ghcr.io/example-org/prefect-worker@{DIGEST}"
CREDENTIALS_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ghcr-login-Ab12Cd"
GIVEN_ECR = {**BASE_CONFIG, "workerImage": ECR_IMAGE}
GIVEN_GHCR = {**BASE_CONFIG, "workerImage": GHCR_IMAGE, "workerImageRegistryCredentialsSecretArn": CREDENTIALS_ARN}
IMAGE_BUILDING = {
    "docker:index/image:Image",
    "aws:ecr/repository:Repository",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy",
}


@pytest.fixture(scope="module", params=["process", "ecs"])
def ecr_run(request: pytest.FixtureRequest) -> Run:
    return run_program({**GIVEN_ECR, "workPoolType": request.param})


@pytest.fixture(scope="module", params=["process", "ecs"])
def ghcr_run(request: pytest.FixtureRequest) -> Run:
    return run_program({**GIVEN_GHCR, "workPoolType": request.param})


def execution_grants(run: Run) -> dict[str, set[str]]:
    return grants(run, "roles-execution-policy")


def pool_template(run: Run) -> dict[str, Any] | None:
    """The `ecs` pool's template (None for a `process` pool, whose template names no image)."""
    template = json.loads(run.one("pulumi-python:dynamic/prefect:WorkPool").plain_inputs["base_job_template"])
    return template if "task_definition" in template["job_configuration"] else None


def test_a_given_image_registers_nothing_to_build_and_asks_for_no_ecr_token(default_run: Run, ecr_run: Run) -> None:
    """No docker.Image (so no Docker where `pulumi up` runs), no repository of ours, no ECR token invoke."""
    built = {r.typ for r in default_run.resources} & IMAGE_BUILDING
    assert built == IMAGE_BUILDING  # what the default (building) stack has, and a given image drops
    assert not {r.typ for r in ecr_run.resources} & IMAGE_BUILDING
    assert not any(r.typ.startswith("docker:") for r in ecr_run.resources)
    invoked = {token for token, _ in ecr_run.mocks.invokes}
    assert "aws:ecr/getAuthorizationToken:getAuthorizationToken" in {t for t, _ in default_run.mocks.invokes}
    assert not any(token.startswith(("aws:ecr/", "docker:")) for token in invoked)


def test_the_worker_and_the_ecs_pools_flow_runs_run_the_given_image(ecr_run: Run) -> None:
    assert ecr_run.container()["image"] == ECR_IMAGE
    assert ecr_run.outputs["imageUri"] == ECR_IMAGE
    assert ecr_run.outputs["repositoryUrl"] == ECR_IMAGE.split("@")[0]
    template = pool_template(ecr_run)
    if template is not None:
        assert template["variables"]["properties"]["image"]["default"] == ECR_IMAGE
        (container,) = template["job_configuration"]["task_definition"]["containerDefinitions"]
        assert "repositoryCredentials" not in container


def test_execution_role_pulls_from_the_given_ecr_repository_only(ecr_run: Run) -> None:
    """Another account's repository, in another region: the ARN is its, with the stack's partition."""
    repo_arn = f"arn:aws:ecr:eu-west-1:{OTHER_ACCOUNT}:repository/team/prefect-worker"
    ecr = {action: resources for action, resources in execution_grants(ecr_run).items() if action.startswith("ecr:")}
    assert ecr == {
        "ecr:GetAuthorizationToken": {"*"},  # AWS accepts no resource for it
        "ecr:BatchCheckLayerAvailability": {repo_arn},
        "ecr:GetDownloadUrlForLayer": {repo_arn},
        "ecr:BatchGetImage": {repo_arn},
    }


class ChinaMocks(RecordingMocks):
    """Mocks of a stack in the aws-cn partition."""

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getPartition:getPartition":
            self.invokes.append((args.token, dict(args.args)))
            return {"partition": "aws-cn", "dnsSuffix": "amazonaws.com.cn"}
        return super().call(args)


def test_the_repository_arn_takes_the_stacks_partition() -> None:
    image = f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/prefect-worker@{DIGEST}"
    run = run_program({**BASE_CONFIG, "workerImage": image}, mocks=ChinaMocks())
    repo_arn = f"arn:aws-cn:ecr:cn-north-1:{ACCOUNT}:repository/prefect-worker"
    assert execution_grants(run)["ecr:BatchGetImage"] == {repo_arn}


def test_a_non_ecr_image_is_pulled_with_its_registry_credentials_only(ghcr_run: Run) -> None:
    """ECS private registry authentication: the container names the secret, the execution role reads exactly that
    secret, and holds no ECR permission at all."""
    allowed = execution_grants(ghcr_run)
    assert not any(action.startswith("ecr:") for action in allowed)
    assert CREDENTIALS_ARN in allowed["secretsmanager:GetSecretValue"]
    assert allowed["secretsmanager:GetSecretValue"] - {CREDENTIALS_ARN} == {
        ghcr_run.one("aws:secretsmanager/secret:Secret").outputs["arn"]  # the API key's, as before
    }
    credentials = {"credentialsParameter": CREDENTIALS_ARN}
    assert ghcr_run.container()["repositoryCredentials"] == credentials
    template = pool_template(ghcr_run)
    if template is not None:
        (container,) = template["job_configuration"]["task_definition"]["containerDefinitions"]
        assert container["repositoryCredentials"] == credentials
        assert template["variables"]["properties"]["image"]["default"] == GHCR_IMAGE


def test_given_ecr_image_policies_are_valid_iam_documents(ecr_run: Run) -> None:
    assert policy_problems(registered_policies(ecr_run)) == []


def test_non_ecr_image_policies_are_valid_iam_documents(ghcr_run: Run) -> None:
    assert policy_problems(registered_policies(ghcr_run)) == []


def test_the_worker_task_definition_with_registry_credentials_registers_with_ecs(aws_env: None, ghcr_run: Run) -> None:
    """botocore checks the container definitions against RegisterTaskDefinition's shape; ECS keeps the login."""
    task = ghcr_run.one("aws:ecs/taskDefinition:TaskDefinition").plain_inputs
    registered = boto3.client("ecs").register_task_definition(
        family=task["family"],
        containerDefinitions=[ghcr_run.container()],
        cpu=task["cpu"],
        memory=task["memory"],
        networkMode=task["networkMode"],
        requiresCompatibilities=task["requiresCompatibilities"],
        executionRoleArn=task["executionRoleArn"],
    )["taskDefinition"]
    assert registered["containerDefinitions"][0]["repositoryCredentials"] == {"credentialsParameter": CREDENTIALS_ARN}


def test_the_ecs_workers_flow_run_task_definition_keeps_the_registry_credentials(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real prefect-aws worker, from the pool's template, registers the flow-run task definition (botocore
    checks its shape) with the image's registry login."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
    from prefect_aws.workers.ecs_worker import ECSWorker

    run = run_program({**GIVEN_GHCR, "workPoolType": "ecs"})
    template = pool_template(run)
    assert template is not None
    ecs = boto3.client("ecs")
    vpc, subnet, group, cluster = moto_ecs_network()
    properties = template["variables"]["properties"]
    properties["cluster"]["default"] = cluster
    properties["vpc_id"]["default"] = vpc
    properties["network_configuration"]["default"].update(subnets=[subnet], securityGroups=[group])
    record_aws_calls(monkeypatch)  # answers RunTask after botocore's shape check (moto cannot size Fargate tasks)
    flow_run = FlowRun(flow_id=uuid.uuid4(), deployment_id=uuid.uuid4(), name="sample-run")
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_API_KEY: API_KEY}):
        configuration = _job_configuration(template)
        configuration.prepare_for_flow_run(flow_run)
        ECSWorker(work_pool_name="fargate-pool")._prepare_and_create_task(
            logging.getLogger("test"), configuration.aws_credentials.get_client("ecs"), configuration, flow_run
        )
    monkeypatch.undo()
    (registered,) = ecs.list_task_definitions()["taskDefinitionArns"]
    (container,) = ecs.describe_task_definition(taskDefinition=registered)["taskDefinition"]["containerDefinitions"]
    assert container["image"] == GHCR_IMAGE
    assert container["repositoryCredentials"] == {"credentialsParameter": CREDENTIALS_ARN}


def test_the_documented_ci_build_is_the_programs_build() -> None:
    """The pipeline docs/worker-image.md documents builds what `pulumi up` would: same context, Dockerfile and
    build args."""
    page = (ROOT / "docs" / "worker-image.md").read_text()
    (command,) = [block for block in page.split("```") if "docker buildx build" in block]
    spec = build_spec(ARGS)
    assert f"docker buildx build {spec['context']} -f {spec['dockerfile']} " in command
    assert [f"--build-arg {arg}=" in command for arg in spec["args"]] == [True] * len(spec["args"])
    assert "pinned_version('prefect')" in command and "containerimage.digest" in command
