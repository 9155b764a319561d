"""AgentImage: the ECR repository and the worker image built from `agent_image/Dockerfile`.

Creates an ECR repository (scan on push, immutable tags, a lifecycle policy that keeps the newest images)
and a `pulumi_docker.Image` built for the task's platform and pushed with a short-lived ECR token, tagged
with a hash of its build inputs (`build_tag`). The image is Prefect (the version pinned in requirements.txt)
plus agent_image/requirements.txt (what pulling flow code from S3 needs) plus flows/requirements.txt (what
the flows import). Needs a Docker engine where `pulumi up` runs. The task definition should use
`image_uri`, the digest-pinned reference, so that every rebuilt image rolls the service.
With config workerImage, the image is built and pushed elsewhere (a CI pipeline): nothing of the above is
created, and `pulumi preview`/`up` need no Docker.
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker
from docker.utils.build import exclude_paths
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from components.config import WorkerImage

PROJECT_DIR = Path(__file__).resolve().parent.parent  # to read files here; never part of a resource input
# The build context and Dockerfile, relative to the project directory, where `pulumi up` runs the program
# and its provider plugins. pulumi-docker diffs these strings as they are (provider/provider.go, `Diff`
# compares all old and new inputs), so an absolute path would rebuild the image and roll the worker
# whenever the project is checked out elsewhere (CI and a laptop). What is built is tracked by the
# `contextDigest` that `Check` adds: a hash of the Dockerfile and of every file of the context that
# .dockerignore lets through, by relative name (`hashContext`). pulumi-docker resolves a relative
# `dockerfile` against the project directory, not the context (`Check` stats it as given; release v4.0.1).
BUILD_CONTEXT = "."  # the project root, so the image can take flows/requirements.txt; .dockerignore keeps it small
DOCKERFILE = "agent_image/Dockerfile"
# The files the Dockerfile copies (the only ones .dockerignore lets through).
IMAGE_REQUIREMENTS = "agent_image/requirements.txt"
FLOW_REQUIREMENTS = "flows/requirements.txt"
# The stack's own builds kept: the image the service runs, the one before it (what the deployment circuit
# breaker rolls back to when a deploy fails) and one more (the rollback target is still there after a second
# failed deploy in a row; a deploy that succeeds makes the newest build the one that runs). Each is at most
# about 0.5 GB, so the repository holds at most about 1.5 GB of them, $0.15 a month (devtools/costs.py). A revert
# to inputs whose image was expired rebuilds it under the same tag.
KEEP_IMAGES = 3
# Images pushed to the repository by hand (docs/flows.md, per-deployment images of an `ecs` pool): kept while
# among the newest this many of any kind. They never expire a build of the stack's own (the first rule's tag
# prefix protects those), so a scaled-to-zero service can always start its current image.
KEEP_OTHER_IMAGES = 10
BUILD_TAG_PREFIX = "prefect-"  # every tag `build_tag` makes starts with it
TAG_HASH_CHARS = 32  # 128 bits of the build inputs' sha256: no two different inputs share a tag


def pinned_version(package: str, requirements: Path = PROJECT_DIR / "requirements.txt") -> str:
    """The `==` version `requirements` pins for `package`: requirements.txt's Prefect pin is the one Prefect
    version of the project (the client `pulumi up` uses, the image's base and constraint, the deploy CLI)."""
    for line in requirements.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):  # comments and pip options such as -r
            continue
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == canonicalize_name(package):
            pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
            if len(pins) == 1:
                return pins[0]
    raise ValueError(f"{requirements.name} pins no exact version of {package} (expected a line {package}==X.Y.Z)")


@dataclass(frozen=True, kw_only=True)
class AgentImageArgs:
    """What the image is built from and for."""

    platform: str  # docker platform matching the task's cpu architecture, e.g. linux/amd64
    prefect_version: str = pinned_version("prefect")  # tag of the prefecthq/prefect base image, without -python
    given: WorkerImage | None = None  # config workerImage: used as it is, nothing built or pushed


def build_spec(args: AgentImageArgs) -> dict[str, Any]:
    """The docker build's inputs, as `pulumi_docker.DockerBuildArgs` takes them (and as `build_tag` hashes them)."""
    return {
        "context": BUILD_CONTEXT,
        "dockerfile": DOCKERFILE,
        "platform": args.platform,
        "args": {"PREFECT_VERSION": args.prefect_version},
    }


def context_files(project_dir: Path = PROJECT_DIR) -> list[str]:
    """The files of the build context that Docker is sent, by relative name, as docker-py selects them: its
    `.dockerignore` reading (`docker.api.build.BuildApiMixin.build`: stripped lines, '#' comments dropped) and
    matcher (`docker.utils.build.exclude_paths`, which always keeps the Dockerfile and .dockerignore)."""
    context = project_dir / BUILD_CONTEXT
    ignore_file = context / ".dockerignore"
    lines = [line.strip() for line in ignore_file.read_text().splitlines()] if ignore_file.exists() else []
    patterns = [line for line in lines if line and not line.startswith("#")]
    return sorted(path for path in exclude_paths(str(context), patterns, DOCKERFILE) if (context / path).is_file())


def build_tag(args: AgentImageArgs, project_dir: Path = PROJECT_DIR) -> str:
    """The image's tag: a hash of everything the build is made from (the build spec, and each file Docker is
    sent: its name, mode and content), after the Prefect version for the reader.

    The repository's tags are IMMUTABLE, so a tag must never be pushed twice. pulumi-docker pushes only when its
    inputs differ from the last deployment's: `Diff` (provider/provider.go, pulumi-docker 5.2.0, unchanged since
    v5.1.0) compares the inputs stored in state with the new ones, `imageName` and `build` with the
    `contextDigest` that `Check` adds (`hashContext`: the Dockerfile and each context file's name, mode and
    content, the files chosen by .dockerignore); no difference, no `Update`, so no build and no push. This hash
    covers at least all of that, so any input change that makes pulumi-docker build again also gives a new tag;
    unchanged inputs keep the tag, and nothing is pushed. `dockerBuild` (provider/image.go) tags and pushes
    `imageName` only (`ImagePush(ctx, img.Name, ...)`, "without extra tagging"): no `latest` is ever pushed."""
    digest = hashlib.sha256(json.dumps(build_spec(args), sort_keys=True).encode())
    context = project_dir / BUILD_CONTEXT
    for name in context_files(project_dir):
        path = context / name
        digest.update(json.dumps([name, stat.filemode(path.stat().st_mode)]).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{BUILD_TAG_PREFIX}{args.prefect_version}-{digest.hexdigest()[:TAG_HASH_CHARS]}"


def lifecycle_policy() -> str:
    """Keep the newest KEEP_IMAGES builds of the stack's own, and other images while among the newest
    KEEP_OTHER_IMAGES of any kind. ECR evaluates the rules by priority, and "an image that matches the tagging
    requirements of a higher priority rule cannot be expired by a rule with a lower priority", while the lower
    rule still counts it (ECR user guide, "Lifecycle policy evaluation rules"); a rule with tagStatus `any` must
    come last."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"Keep the newest {KEEP_IMAGES} images this stack built",
                    "selection": {
                        "tagStatus": "tagged",
                        "tagPrefixList": [BUILD_TAG_PREFIX],
                        "countType": "imageCountMoreThan",
                        "countNumber": KEEP_IMAGES,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"Keep other images while among the newest {KEEP_OTHER_IMAGES}",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": KEEP_OTHER_IMAGES,
                    },
                    "action": {"type": "expire"},
                },
            ]
        }
    )


class AgentImage(pulumi.ComponentResource):
    """The digest-pinned worker image: built here into the stack's own ECR repository, or given (config
    workerImage, built and pushed by your pipeline), in which case this registers nothing and needs no Docker."""

    repository: aws.ecr.Repository | None
    """The stack's ECR repository the image is pushed to; None for a given image."""
    repository_url: pulumi.Output[str]
    """URL of the repository the image is in."""
    repository_arn: pulumi.Output[str] | None
    """The ECR repository the execution role pulls from; None for a given image outside ECR."""
    registry_credentials_arn: str | None
    """The Secrets Manager secret ECS logs in to a non-ECR registry with (ECS private registry auth), or None."""
    image_uri: pulumi.Output[str]
    """Digest-pinned image reference (repo@sha256:...), changes with every rebuilt image."""

    def __init__(self, name: str, args: AgentImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:image:AgentImage", name, None, opts)
        self.repository = None
        self.registry_credentials_arn = None
        if args.given is not None:
            self._use(args.given)
        else:
            self._build(name, args)
        self.register_outputs({"repository_url": self.repository_url, "image_uri": self.image_uri})

    def _use(self, given: WorkerImage) -> None:
        """A given image: no resource, no Docker, no ECR token; the role pulls from its repository only. The
        ARN takes the stack's partition: a role can pull only from an ECR registry of its own partition."""
        self.repository_url = pulumi.Output.from_input(f"{given.registry}/{given.repository}")
        self.image_uri = pulumi.Output.from_input(given.reference)
        self.registry_credentials_arn = given.credentials_secret_arn
        self.repository_arn = None
        if given.ecr_account is not None:
            partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
            self.repository_arn = pulumi.Output.format(
                "arn:{0}:ecr:{1}:{2}:repository/{3}", partition, given.ecr_region, given.ecr_account, given.repository
            )

    def _build(self, name: str, args: AgentImageArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        tag = build_tag(args)
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            image_tag_mutability="IMMUTABLE",  # every build has its own tag (build_tag); the task pins the digest
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
            build=docker.DockerBuildArgs(**build_spec(args)),
            image_name=self.repository.repository_url.apply(lambda url: f"{url}:{tag}"),
            registry=docker.RegistryArgs(
                server=self.repository.repository_url,
                username=token.user_name,
                password=pulumi.Output.secret(token.password),
            ),
            opts=child,
        )
        self.repository_url = self.repository.repository_url
        self.repository_arn = self.repository.arn
        self.image_uri = image.repo_digest
