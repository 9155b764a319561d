"""What the worker's image and data are protected and pulled with: workerImage (pinned by digest), the
registry credentials a non-ECR registry needs, and kmsKeyArn (a key's ARN in the stack's region, never
an alias)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from docker.auth import INDEX_NAME, split_repo_name
from docker.utils import parse_repository_tag
from docker.utils.build import match_tag

from components.config.reader import NAMESPACE, UUID, UUID_TEXT, Reader, set_command

# A KMS key's ARN (a single-Region key's id is a UUID, a multi-Region key's `mrk-` and 32 hex digits).
_KMS_KEY_ARN = re.compile(
    rf"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z]{{2}}(-[a-z]+)+-\d):(?P<account>\d{{12}}):"
    rf"key/({UUID_TEXT}|mrk-[0-9a-f]{{32}})$"
)
_KMS_ALIAS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:alias/")

# An image pinned by digest, and the two kinds of reference ECS pulls: a private ECR repository's
# (<account>.dkr.ecr.<region>.amazonaws.com[.cn], "Amazon ECR private registry") and a Secrets Manager secret's
# full ARN (with the 6-character suffix), which the execution role's policy can name exactly.
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_ECR_REGISTRY = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z]{2}(-[a-z]+)+-[0-9])\.amazonaws\.com(\.cn)?$"
)
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z]{2}(-[a-z]+)+-[0-9]:[0-9]{12}:secret:[\w/+=.@-]+-\w{6}$")
IMAGE_EXAMPLE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/prefect-worker@sha256:<64-hex-digits>"
CREDENTIALS_KEY = "workerImageRegistryCredentialsSecretArn"


@dataclass(frozen=True, kw_only=True)
class WorkerImage:
    """An image built elsewhere (config workerImage), pinned by digest: nothing is built or pushed by the stack."""

    reference: str  # <registry>/<repository>@sha256:<64 hex>
    registry: str
    repository: str
    ecr_account: str | None = None  # set for a private ECR registry
    ecr_region: str | None = None
    credentials_secret_arn: str | None = None  # a non-ECR registry: ECS private registry authentication


def read_kms_key(r: Reader, region: str | None) -> str | None:
    """kmsKeyArn: a key's ARN in the stack's `region` (when known). Not an alias's: IAM policies and key grants
    are evaluated on the key's ARN, so a role's statement on an alias ARN would never match, and an alias
    can be repointed to another key without `pulumi up` noticing."""
    raw = r.raw("kmsKeyArn")
    if raw is None:
        return None
    key = "kmsKeyArn"
    example = "arn:aws:kms:<region>:<account>:key/<key-id>"
    allowed = "the ARN of a symmetric KMS key, arn:<partition>:kms:<region>:<account>:key/<key-id>"
    match = _KMS_KEY_ARN.match(raw)
    lookup = f"$(aws kms describe-key --key-id {raw} --query KeyMetadata.Arn --output text)"  # the key's ARN
    if _KMS_ALIAS_ARN.match(raw) or raw.startswith("alias/"):
        r.fail(
            key,
            f"{raw!r} is an alias, not a key (IAM conditions match the key's ARN)",
            allowed,
            set_command(key, lookup),
        )
        return None
    if match is None:
        fix = set_command(key, lookup if UUID.match(raw) or raw.startswith("mrk-") else example)
        r.fail(key, f"{raw!r} is not a KMS key ARN", allowed, fix)
        return None
    if region and match["region"] != region:
        r.fail(
            key,
            f"the key is in {match['region']}, the stack in {region} (a KMS key serves its own region)",
            f"a key in {region}",
            set_command(key, f"arn:{match['partition']}:kms:{region}:{match['account']}:key/<key-id>"),
        )
        return None
    return raw


def read_worker_image(r: Reader) -> WorkerImage | None:
    """workerImage, a `<registry>/<repository>@sha256:<digest>` reference read with docker-py's own reference
    helpers; a non-ECR registry only with workerImageRegistryCredentialsSecretArn (ECS private registry auth)."""
    raw, credentials = r.raw("workerImage"), r.raw(CREDENTIALS_KEY)
    if raw is None:
        if credentials is not None:
            r.fail(
                CREDENTIALS_KEY,
                "is set but workerImage is not (the image built by `pulumi up` is pushed to the stack's ECR)",
                f"{CREDENTIALS_KEY} only with a workerImage outside ECR",
                f"pulumi config rm {NAMESPACE}:{CREDENTIALS_KEY}",
            )
        return None
    fix = set_command("workerImage", IMAGE_EXAMPLE)
    allowed = "<registry>/<repository>@sha256:<64 hex digits>, the digest your registry reported for the push"
    name, digest = parse_repository_tag(raw)  # a tag in place of a digest comes back as the "digest"
    registry, repository = split_repo_name(name)
    if digest is None or not _DIGEST.match(digest):
        r.fail("workerImage", f"{raw!r} is not pinned by a sha256 digest", allowed, fix)
        return None
    if not match_tag(name) or ":" in repository:  # docker-py's reference grammar, and no tag next to the digest
        r.fail("workerImage", f"{raw!r} is not an image reference (lowercase, no tag)", allowed, fix)
        return None
    if registry == INDEX_NAME and not name.startswith(f"{INDEX_NAME}/"):
        r.fail("workerImage", f"{raw!r} names no registry", allowed, fix)
        return None
    ecr = _ECR_REGISTRY.match(registry)
    if ecr and credentials is not None:
        r.fail(
            CREDENTIALS_KEY,
            "is set but workerImage is in ECR, which the execution role pulls from with IAM",
            f"{CREDENTIALS_KEY} only with a workerImage outside ECR",
            f"pulumi config rm {NAMESPACE}:{CREDENTIALS_KEY}",
        )
    elif not ecr and credentials is None:
        r.fail(
            "workerImage",
            f"{raw!r} is not in a private ECR registry (<account>.dkr.ecr.<region>.amazonaws.com), and "
            f"{CREDENTIALS_KEY} is not set",
            "an ECR image; or another registry with a Secrets Manager secret holding its "
            '{"username": ..., "password": ...}',
            f"{set_command(CREDENTIALS_KEY, 'arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>')}  "
            f"(or: {fix})",
        )
    elif not ecr and credentials is not None and not _SECRET_ARN.match(credentials):
        r.fail(
            CREDENTIALS_KEY,
            f"{credentials!r} is not the full ARN of a Secrets Manager secret",
            "arn:<partition>:secretsmanager:<region>:<account>:secret:<name>-<6 characters>, as "
            "`aws secretsmanager describe-secret --secret-id <name> --query ARN` prints it",
            set_command(CREDENTIALS_KEY, "arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>"),
        )
    return WorkerImage(
        reference=raw,
        registry=registry,
        repository=repository,
        ecr_account=ecr["account"] if ecr else None,
        ecr_region=ecr["region"] if ecr else None,
        credentials_secret_arn=None if ecr else credentials,
    )
