"""Config that cannot silently mean something else: a key of this project the program does not read, and a region
where ECS does not run, are refused with the fix, before any resource exists (components/config/keys.py, region.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pulumi
import pytest
import yaml
from conftest import API_KEY, BASE_CONFIG, PROJECT, ROOT, RecordingMocks, load_stack_config, run_program

from components.config import RETIRED, ConfigError, known_keys, load_config
from components.config.region import ecs_regions


def problems(config: dict[str, str], secret_keys: list[str] | None = None) -> list[str]:
    """The refusal's lines, each `<key>: <problem>. Allowed: ... Fix: ...`."""
    with pytest.raises(ConfigError) as raised:
        load_stack_config(config, secret_keys)
    return [line.strip()[2:] for line in str(raised.value).splitlines()[1:]]


def problem_for(key: str, config: dict[str, str], secret_keys: list[str] | None = None) -> str:
    (line,) = [line for line in problems(config, secret_keys) if line.startswith(f"{key}: ")]
    return line


# -- a key the program does not read ---------------------------------------------------------------------------


def test_a_missing_s_in_min_workers_is_refused_with_the_key_meant_and_the_value_kept() -> None:
    """`minWorker 0` would otherwise give an always-on worker (about $23 a month) instead of scale to zero."""
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program({**BASE_CONFIG, "minWorker": "0"}, mocks=mocks)
    assert mocks.resources == []  # refused before anything is registered
    (line,) = str(raised.value).splitlines()[1:]
    assert line == (
        f"  - {PROJECT}:minWorker: is not a key this program reads, so its value would be ignored (the nearest key "
        f"is minWorkers). Allowed: the keys docs/configuration.md lists, as Pulumi.yaml declares them. "
        f"Fix: pulumi config rm {PROJECT}:minWorker && pulumi config set {PROJECT}:minWorkers 0"
    )


# (typed key, value, the key meant, the value as the fix gives it)
TYPOS = [
    ("alertEmial", "oncall@example.com", "alertEmail", "oncall@example.com"),
    ("maxWorker", "3", "maxWorkers", "3"),
    ("workpool", "team pool", "workPool", "'team pool'"),  # quoted for the shell
    ("cpuArch", "ARM64", "cpuArchitecture", "ARM64"),
    ("desiredcount", "2", "desiredCount", "2"),
    ("prefectNotifyBlok", "slack-webhook/ops", "prefectNotifyBlock", "slack-webhook/ops"),
    ("logRetention", "7", "logRetentionDays", "7"),
]


@pytest.mark.parametrize(("typed", "value", "meant", "shown"), TYPOS, ids=[t[0] for t in TYPOS])
def test_a_typo_is_refused_naming_the_nearest_key_and_moving_the_value(
    typed: str, value: str, meant: str, shown: str
) -> None:
    line = problem_for(f"{PROJECT}:{typed}", {**BASE_CONFIG, typed: value})
    assert f"(the nearest key is {meant})" in line
    assert line.endswith(f"Fix: pulumi config rm {PROJECT}:{typed} && pulumi config set {PROJECT}:{meant} {shown}")


def test_a_list_set_with_path_is_moved_item_by_item_keeping_its_type() -> None:
    subnets = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    line = problem_for(f"{PROJECT}:subnetId", {**BASE_CONFIG, "subnetId": json.dumps(subnets)})
    assert line.endswith(
        f"Fix: pulumi config rm {PROJECT}:subnetId"
        f" && pulumi config set --path '{PROJECT}:subnetIds[0]' {subnets[0]}"
        f" && pulumi config set --path '{PROJECT}:subnetIds[1]' {subnets[1]}"
    )


def test_a_mistyped_secret_never_shows_its_value_and_stays_a_secret() -> None:
    config = {**BASE_CONFIG, "prefectApiKy": API_KEY}
    del config["prefectApiKey"]
    with pytest.raises(ConfigError) as raised:
        load_stack_config(config, ["prefectApiKy"])
    message = str(raised.value)
    assert API_KEY not in message
    (line,) = [line for line in message.splitlines() if f"{PROJECT}:prefectApiKy:" in line]
    assert line.endswith(
        f'Fix: pulumi config set --secret {PROJECT}:prefectApiKey "$(pulumi config get {PROJECT}:prefectApiKy)" '
        f"&& pulumi config rm {PROJECT}:prefectApiKy"
    )


def test_every_unread_key_is_reported_with_the_other_problems() -> None:
    found = problems({**BASE_CONFIG, "cpu": "300", "minWorker": "0", "alertEmial": "a@example.com"})
    assert [line.split(": ", 1)[0] for line in found] == [f"{PROJECT}:{k}" for k in ("cpu", "alertEmial", "minWorker")]


def test_a_retired_key_keeps_its_own_message() -> None:
    line = problem_for(f"{PROJECT}:prefectVersion", {**BASE_CONFIG, "prefectVersion": "3.9.1"})
    assert line == f"{PROJECT}:prefectVersion: " + "{}. Allowed: {}. Fix: {}".format(*RETIRED["prefectVersion"])


@pytest.mark.parametrize(
    "key", ["aws:profile", "aws:skipCredentialsValidation", "pulumi:tags", "other-project:minWorker", "minworkers:x"]
)
def test_keys_of_other_namespaces_are_left_alone(key: str) -> None:
    assert load_stack_config({**BASE_CONFIG, key: "x"}).scaling is None


def test_keys_the_cli_passes_in_pulumi_config_are_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's Python language host passes the stack's config as JSON in PULUMI_CONFIG (the exec shim loads it
    with set_all_config); a program run some other way that only sets the variable is checked the same."""
    full = {f"{PROJECT}:{key}": value for key, value in {**BASE_CONFIG, "minWorker": "0"}.items()}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(full))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps([f"{PROJECT}:prefectApiKey"]))
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_all_config({}, [f"{PROJECT}:prefectApiKey"])
    with pytest.raises(ConfigError, match=f"{PROJECT}:minWorker: is not a key this program reads"):
        load_config()


# -- the known keys: one set, the one Pulumi.yaml declares ------------------------------------------------------


def test_the_keys_the_program_reads_are_the_keys_pulumi_yaml_declares() -> None:
    """Both ways: a key read but not declared gets no type check or default from the CLI; a key declared but not
    read would be refused by the program as unread."""
    declared = set(yaml.safe_load(Path(ROOT / "Pulumi.yaml").read_text())["config"])
    load_stack_config(BASE_CONFIG)
    known = known_keys()
    assert known - declared == set(), "read by the program, not declared in Pulumi.yaml"
    assert declared - known == set(), "declared in Pulumi.yaml, not read by the program"
    assert not set(RETIRED) & declared


@pytest.mark.parametrize(
    "config",
    [
        {"prefectApiUrl": "http://127.0.0.1:4200/api"},
        {**BASE_CONFIG, "workPoolType": "ecs", "minWorkers": "0", "kmsKeyArn": "alias/x", "vpcId": "vpc-1"},
        {**BASE_CONFIG, "prefectApiUrl": "https://x.io/api", "workerImage": "nope", "alarms": "false"},
    ],
    ids=["self-hosted", "ecs-scaled-bad-key", "conflicting"],
)
def test_the_known_keys_do_not_depend_on_the_values(config: dict[str, str]) -> None:
    """Every key is read whatever the values (a rule that depends on another key still reads both)."""
    load_stack_config(BASE_CONFIG)
    base = known_keys()
    with contextlib.suppress(ConfigError):
        load_stack_config(config, [])
    assert known_keys() == base


# -- aws:region ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("eu-frankfurt-1", "eu-central-1"),  # the place, from botocore's "Europe (Frankfurt)"
        ("eu-central1", "eu-central-1"),
        ("us-east1", "us-east-1"),
        ("US-EAST-1", "us-east-1"),
        ("us-oregon-2", "us-west-2"),
        ("eu-west-4", "eu-west-1"),
    ],
)
def test_a_region_where_ecs_does_not_run_is_refused_with_the_one_meant(typed: str, meant: str) -> None:
    line = problem_for("aws:region", {**BASE_CONFIG, "aws:region": typed})
    assert line.startswith(f"aws:region: {typed!r} is not a region where ECS runs. Allowed: a region code such as")
    assert line.endswith(f"Fix: pulumi config set aws:region {meant}")


def test_a_wrong_region_stops_the_program_before_any_resource() -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match="aws:region: 'eu-central1' is not a region where ECS runs"):
        run_program({**BASE_CONFIG, "aws:region": "eu-central1"}, mocks=mocks)
    assert mocks.resources == []


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"])
def test_regions_of_every_partition_are_accepted(region: str) -> None:
    assert region in ecs_regions()
    load_stack_config({**BASE_CONFIG, "aws:region": region})


def test_an_unset_region_is_read_from_the_environment_as_the_aws_provider_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load_stack_config(BASE_CONFIG)  # neither: left to the provider (its profile, or its own error)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-frankfurt-1")  # AWS_REGION first
    line = problem_for("aws:region", BASE_CONFIG)
    assert line.startswith("aws:region: 'eu-frankfurt-1' (from AWS_REGION; aws:region is not set) is not a region")
    assert line.endswith("Fix: pulumi config set aws:region eu-central-1")
    load_stack_config({**BASE_CONFIG, "aws:region": "eu-west-1"})  # the config wins, as for the provider
    monkeypatch.delenv("AWS_REGION")
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert load_stack_config({**BASE_CONFIG, "kmsKeyArn": key}).kms_key_arn == key
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the key's region is checked against the env's
    assert "the key is in eu-west-1, the stack in us-east-1" in problem_for(
        f"{PROJECT}:kmsKeyArn", {**BASE_CONFIG, "kmsKeyArn": key}
    )
