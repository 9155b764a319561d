"""AgentImage: an ECR repository that stays bounded, and an image built for the task's platform."""

from __future__ import annotations

import json

import pytest
from conftest import Run, run_pulumi

from components.agent_image import IMAGE_CONTEXT, KEEP_IMAGES, AgentImage, AgentImageArgs


@pytest.fixture(scope="module")
def image_run() -> Run:
    return run_pulumi(lambda: AgentImage("agent", AgentImageArgs(prefect_version="3.9.1", platform="linux/arm64")))


def test_repository_scans_on_push_and_keeps_a_bounded_number_of_images(image_run: Run) -> None:
    repo = image_run.one("aws:ecr/repository:Repository").plain_inputs
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    (rule,) = json.loads(image_run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").plain_inputs["policy"])["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES}
    assert rule["action"] == {"type": "expire"}


def test_image_is_built_from_agent_image_for_the_platform_and_pushed_to_the_repo(image_run: Run) -> None:
    image = image_run.one("docker:index/image:Image").plain_inputs
    repo = image_run.one("aws:ecr/repository:Repository").outputs
    assert image["build"]["context"] == str(IMAGE_CONTEXT)
    assert image["build"]["platform"] == "linux/arm64"
    assert image["build"]["args"] == {"PREFECT_VERSION": "3.9.1"}
    assert image["imageName"].startswith(repo["repositoryUrl"] + ":")
    assert image["registry"]["server"] == repo["repositoryUrl"]
    assert image.get("skipPush") in (None, False)


def test_registry_password_is_kept_secret(image_run: Run) -> None:
    from pulumi.runtime import rpc

    registry = image_run.one("docker:index/image:Image").inputs["registry"]  # the password makes it all secret
    assert registry[rpc._special_sig_key] == rpc._special_secret_sig
    assert registry["value"]["password"] == "ecr-token"


def test_dockerfile_bakes_in_the_pinned_requirements() -> None:
    """The image installs agent_image/requirements.txt at build time, on the configured Prefect base."""
    dockerfile = (IMAGE_CONTEXT / "Dockerfile").read_text()
    pins = [line for line in (IMAGE_CONTEXT / "requirements.txt").read_text().splitlines() if "==" in line]
    assert {pin.split("==")[0] for pin in pins} >= {"s3fs", "prefect-aws"}
    assert "FROM prefecthq/prefect:${PREFECT_VERSION}-python3.12" in dockerfile
    assert "-r /opt/prefect-fargate/requirements.txt" in dockerfile
