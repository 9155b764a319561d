"""AgentImage: the ECR repository and the s3fs-enabled worker image built from `agent_image/`.

Creates an ECR repository (scan on push, a lifecycle policy that keeps the newest images) and a
`pulumi_docker.Image` built for the task's platform and pushed with a short-lived ECR token.
Needs a Docker engine where `pulumi up` runs. The task definition should use `image_uri`, the
digest-pinned reference, so that every rebuilt image rolls the service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

IMAGE_CONTEXT = Path(__file__).resolve().parent.parent / "agent_image"
KEEP_IMAGES = 10


@dataclass(frozen=True, kw_only=True)
class AgentImageArgs:
    """What the image is built from and for."""

    prefect_version: str  # tag of the prefecthq/prefect base image, without the -python suffix
    platform: str  # docker platform matching the task's cpu architecture, e.g. linux/amd64


def lifecycle_policy(keep: int = KEEP_IMAGES) -> str:
    """Expire all but the newest `keep` images, so the repository's storage stays bounded."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"Keep the newest {keep} images",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
                    "action": {"type": "expire"},
                }
            ]
        }
    )


class AgentImage(pulumi.ComponentResource):
    """ECR repository and the digest-pinned worker image."""

    repository: aws.ecr.Repository
    """The ECR repository the image is pushed to."""
    repository_url: pulumi.Output[str]
    """URL of the ECR repository."""
    image_uri: pulumi.Output[str]
    """Digest-pinned image reference (repo@sha256:...), changes with every rebuilt image."""

    def __init__(self, name: str, args: AgentImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:image:AgentImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            image_tag_mutability="MUTABLE",
            force_delete=True,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle", repository=self.repository.name, policy=lifecycle_policy(), opts=child
        )
        token = aws.ecr.get_authorization_token_output(
            registry_id=self.repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        image = docker.Image(
            f"{name}-image",
            build=docker.DockerBuildArgs(
                context=str(IMAGE_CONTEXT),
                dockerfile=str(IMAGE_CONTEXT / "Dockerfile"),
                platform=args.platform,
                args={"PREFECT_VERSION": args.prefect_version},
            ),
            image_name=self.repository.repository_url.apply(lambda url: f"{url}:prefect-{args.prefect_version}"),
            registry=docker.RegistryArgs(
                server=self.repository.repository_url,
                username=token.user_name,
                password=pulumi.Output.secret(token.password),
            ),
            opts=child,
        )
        self.repository_url = self.repository.repository_url
        self.image_uri = image.repo_digest
        self.register_outputs({"repository_url": self.repository_url, "image_uri": self.image_uri})
