"""CredentialSecret: the Prefect credential (API key or auth string) in Secrets Manager, referenced by version.

Creates a secret and one secret version holding the credential. `value_from` pins that version, so a
new value (a new version) changes the task definition and rolls the service; ECS reads the value only
when a task starts, so pinning is what makes rotation take effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# What each credential is called in the secret's description (the key's is the one stacks already hold).
_DESCRIBED_AS = {"PREFECT_API_KEY": "Prefect API key", "PREFECT_API_AUTH_STRING": "Prefect API auth string"}


@dataclass(frozen=True, kw_only=True)
class CredentialSecretArgs:
    """The credential, as a Pulumi secret, and the variable Prefect reads it from."""

    value: pulumi.Input[str]
    env_name: str = "PREFECT_API_KEY"  # or PREFECT_API_AUTH_STRING
    kms_key_arn: str | None = None  # None: Secrets Manager's AWS-managed key (aws/secretsmanager)


def version_pinned_value_from(secret_arn: str, version_id: str) -> str:
    """ECS `valueFrom` for a whole secret at one version: <arn>:<json-key>:<version-stage>:<version-id>."""
    return f"{secret_arn}:::{version_id}"


class CredentialSecret(pulumi.ComponentResource):
    """Secrets Manager secret holding the Prefect credential the worker sends as `env_name`."""

    # The type token of stacks made when this held only the key: a new token would change the URN of
    # the component and of its children, and `pulumi up` would replace the secret.
    TYPE = "prefect-fargate:secrets:ApiKeySecret"

    secret_arn: pulumi.Output[str]
    """ARN of the secret (with AWS's random suffix), for IAM."""
    value_from: pulumi.Output[str]
    """Version-pinned reference for a container definition's `secrets`."""
    env_name: str
    """The environment variable the reference fills: PREFECT_API_KEY or PREFECT_API_AUTH_STRING."""

    def __init__(self, name: str, args: CredentialSecretArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        secret = aws.secretsmanager.Secret(
            f"{name}-secret",
            description=f"{_DESCRIBED_AS[args.env_name]} for the prefect-fargate worker (managed by Pulumi)",
            recovery_window_in_days=7,
            kms_key_id=args.kms_key_arn,
            opts=child,
        )
        version = aws.secretsmanager.SecretVersion(
            f"{name}-version",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(args.value),
            opts=child,
        )
        self.secret_arn = secret.arn
        self.env_name = args.env_name
        self.value_from = pulumi.Output.all(secret.arn, version.version_id).apply(
            lambda parts: version_pinned_value_from(*parts)
        )
        self.register_outputs({"secret_arn": self.secret_arn, "value_from": self.value_from})
