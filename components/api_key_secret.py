"""ApiKeySecret: the Prefect API key in Secrets Manager, referenced by version.

Creates a secret and one secret version holding the key. `value_from` pins that version, so a new
key (a new version) changes the task definition and rolls the service; ECS reads the value only
when a task starts, so pinning is what makes rotation take effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True, kw_only=True)
class ApiKeySecretArgs:
    """The key, as a Pulumi secret."""

    api_key: pulumi.Input[str]
    kms_key_arn: str | None = None  # None: Secrets Manager's AWS-managed key (aws/secretsmanager)


def version_pinned_value_from(secret_arn: str, version_id: str) -> str:
    """ECS `valueFrom` for a whole secret at one version: <arn>:<json-key>:<version-stage>:<version-id>."""
    return f"{secret_arn}:::{version_id}"


class ApiKeySecret(pulumi.ComponentResource):
    """Secrets Manager secret holding the Prefect API key."""

    secret_arn: pulumi.Output[str]
    """ARN of the secret (with AWS's random suffix), for IAM."""
    value_from: pulumi.Output[str]
    """Version-pinned reference for a container definition's `secrets`."""

    def __init__(self, name: str, args: ApiKeySecretArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:secrets:ApiKeySecret", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        secret = aws.secretsmanager.Secret(
            f"{name}-secret",
            description="Prefect API key for the prefect-fargate worker (managed by Pulumi)",
            recovery_window_in_days=7,
            kms_key_id=args.kms_key_arn,
            opts=child,
        )
        version = aws.secretsmanager.SecretVersion(
            f"{name}-version",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(args.api_key),
            opts=child,
        )
        self.secret_arn = secret.arn
        self.value_from = pulumi.Output.all(secret.arn, version.version_id).apply(
            lambda parts: version_pinned_value_from(*parts)
        )
        self.register_outputs({"secret_arn": self.secret_arn, "value_from": self.value_from})
