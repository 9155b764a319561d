"""CredentialSecret: the key lives only in the secret version; tasks reference that version; no key, no secret."""

from __future__ import annotations

import json

import pytest
from conftest import API_KEY, resolve, run_program, run_pulumi, strings_in
from pulumi.runtime import rpc

from components.api_key_secret import CredentialSecret, CredentialSecretArgs


def value_from_for(key: str) -> str:
    holder: list[CredentialSecret] = []
    run = run_pulumi(lambda: holder.append(CredentialSecret("key", CredentialSecretArgs(value=key))))
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
    """What the README's Tear down promises on `pulumi destroy`."""
    run = run_pulumi(lambda: CredentialSecret("key", CredentialSecretArgs(value=API_KEY)))
    assert run.one("aws:secretsmanager/secret:Secret").plain_inputs["recoveryWindowInDays"] == 7


# -- A self-hosted server without authentication: no key, so nothing to store or inject ----------

OPEN_SERVER = {"prefectApiUrl": "http://prefect.internal:4200/api"}
SECRET_TYPES = {"aws:secretsmanager/secret:Secret", "aws:secretsmanager/secretVersion:SecretVersion"}


@pytest.mark.parametrize("pool_type", ["process", "ecs"])
def test_open_server_gets_no_secret_and_no_key_anywhere(pool_type: str) -> None:
    run = run_program({**OPEN_SERVER, "workPoolType": pool_type}, secret_keys=[])
    assert not SECRET_TYPES & {r.typ for r in run.resources}
    assert run.container()["secrets"] == []
    execution = run.one("aws:iam/rolePolicy:RolePolicy", "execution-policy").json_input("policy")
    assert not [s for s in execution["Statement"] if "secretsmanager" in json.dumps(s)]
    pool = run.one("pulumi-python:dynamic/prefect:WorkPool").plain_inputs
    assert "api_key" not in pool
    assert pool["api_url"] == OPEN_SERVER["prefectApiUrl"]
    assert "apiKeySecretArn" not in run.outputs
    if pool_type == "ecs":  # flow-run tasks: prefect-aws's own null, so no `secrets` entry for a key
        variables = json.loads(pool["base_job_template"])["variables"]["properties"]
        assert variables["prefect_api_key_secret_arn"].get("default") is None


def test_self_hosted_server_with_a_key_gets_the_secret() -> None:
    run = run_program({**OPEN_SERVER, "prefectApiKey": API_KEY})
    assert {r.typ for r in run.resources} >= SECRET_TYPES
    assert [s["name"] for s in run.container()["secrets"]] == ["PREFECT_API_KEY"]
    assert "api_key" in run.one("pulumi-python:dynamic/prefect:WorkPool").plain_inputs


# -- A self-hosted server with basic auth: the auth string takes the key's place everywhere --------

AUTH_STRING = "admin:Secret-Pass-That-Must-Never-Leak"
AUTH_SERVER = {**OPEN_SERVER, "prefectApiAuthString": AUTH_STRING}
AUTOMATION = "pulumi-python:dynamic/prefect:Automation"
AUTOMATION_NAMES = {"prefect-automations-zombie-runs", "prefect-automations-stuck-runs"}


@pytest.mark.parametrize("pool_type", ["process", "ecs"])
def test_auth_string_reaches_every_client_as_a_secret_and_nowhere_else(pool_type: str) -> None:
    run = run_program({**AUTH_SERVER, "workPoolType": pool_type}, secret_keys=["prefectApiAuthString"])
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert version.plain_inputs["secretString"] == AUTH_STRING
    assert version.name == "prefect-api-auth-string-version"
    secret = run.one("aws:secretsmanager/secret:Secret")
    value_from = f"{secret.outputs['arn']}:::{version.outputs['versionId']}"
    assert run.container()["secrets"] == [{"name": "PREFECT_API_AUTH_STRING", "valueFrom": value_from}]
    # The providers authenticate with it, as a secret input (their outputs: additional_secret_outputs).
    for resource in (run.one("pulumi-python:dynamic/prefect:WorkPool"), run.one(AUTOMATION, "stuck")):
        assert resource.inputs["auth_string"][rpc._special_sig_key] == rpc._special_secret_sig
        assert "api_key" not in resource.plain_inputs
    if pool_type == "ecs":  # flow-run tasks: prefect-aws's own variable for it (its task definition's `secrets`)
        pool = run.one("pulumi-python:dynamic/prefect:WorkPool").plain_inputs
        variables = json.loads(pool["base_job_template"])["variables"]["properties"]
        assert variables["prefect_api_auth_string_secret_arn"]["default"] == value_from
        assert variables["prefect_api_key_secret_arn"].get("default") is None
    # In plaintext only in the secret version: not in outputs, nor in any other resource's inputs.
    assert not any(AUTH_STRING in s for s in strings_in(run.outputs))
    holders = {r.name for r in run.resources if any(AUTH_STRING in s for s in strings_in(r.plain_inputs))}
    assert holders == {"prefect-api-auth-string-version", "prefect-work-pool-pool", *AUTOMATION_NAMES}
