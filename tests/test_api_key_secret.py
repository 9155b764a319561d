"""ApiKeySecret: the key lives only in the secret version; tasks reference that version."""

from __future__ import annotations

from conftest import API_KEY, resolve, run_pulumi

from components.api_key_secret import ApiKeySecret, ApiKeySecretArgs


def value_from_for(key: str) -> str:
    holder: list[ApiKeySecret] = []
    run = run_pulumi(lambda: holder.append(ApiKeySecret("key", ApiKeySecretArgs(api_key=key))))
    secret = run.one("aws:secretsmanager/secret:Secret")
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert version.plain_inputs == {"secretId": secret.id, "secretString": key}
    value_from = resolve(holder[0].value_from)
    assert value_from == f"{secret.outputs['arn']}:::{version.outputs['versionId']}"
    assert key not in value_from
    return value_from


def test_value_from_pins_the_version_and_changes_with_the_key() -> None:
    assert value_from_for(API_KEY) != value_from_for("pnu_another")


def test_a_deleted_secret_stays_recoverable_for_seven_days() -> None:
    """What the README promises on `pulumi destroy`."""
    run = run_pulumi(lambda: ApiKeySecret("key", ApiKeySecretArgs(api_key=API_KEY)))
    assert run.one("aws:secretsmanager/secret:Secret").plain_inputs["recoveryWindowInDays"] == 7
