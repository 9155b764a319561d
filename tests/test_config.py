"""Stack config: every bad value fails before any resource exists, naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import API_KEY, BASE_CONFIG, PROJECT, ROOT, RecordingMocks, load_stack_config, run_program

from components.config import (
    FARGATE_SIZES,
    ConfigError,
    NetworkConfig,
    TaskSize,
)

VPC = "vpc-0123456789abcdef0"
SUBNET = "subnet-0123456789abcdef0"
SG = "sg-0123456789abcdef0"
CLOUD_URL = "https://api.prefect.cloud/api/accounts/{}/workspaces/{}"


def without(*keys: str) -> dict[str, str]:
    return {k: v for k, v in BASE_CONFIG.items() if k not in keys}


# (case id, config, secret keys or None for the default, key named in the error, text in the error)
INVALID = [
    ("key-missing", without("prefectApiKey"), None, "prefectApiKey", "is not set"),
    ("key-plaintext", BASE_CONFIG, [], "prefectApiKey", "plaintext"),
    ("key-whitespace", {**BASE_CONFIG, "prefectApiKey": "pnu_abc def"}, None, "prefectApiKey", "whitespace"),
    ("no-api-location", without("prefectAccountId", "prefectWorkspaceId"), None, "prefectAccountId", "not set"),
    ("account-without-workspace", without("prefectWorkspaceId"), None, "prefectWorkspaceId", "not set"),
    ("account-not-uuid", {**BASE_CONFIG, "prefectAccountId": "my-account"}, None, "prefectAccountId", "UUID"),
    ("url-and-ids", {**BASE_CONFIG, "prefectApiUrl": "https://prefect.example.com/api"}, None,
     "prefectApiUrl", "not both"),
    ("url-not-http", {**without("prefectAccountId", "prefectWorkspaceId"), "prefectApiUrl": "ftp://x/api"}, None,
     "prefectApiUrl", "not a Prefect API URL"),
    ("url-without-api", {**without("prefectAccountId", "prefectWorkspaceId"), "prefectApiUrl": "https://x.io"},
     None, "prefectApiUrl", "not a Prefect API URL"),
    ("work-pool-spaces", {**BASE_CONFIG, "workPool": "my pool"}, None, "workPool", "not valid"),
    ("prefect-version-gone", {**BASE_CONFIG, "prefectVersion": "3.9.1"}, None, "prefectVersion", "no longer read"),
    ("cpu-not-fargate", {**BASE_CONFIG, "cpu": "300"}, None, "cpu", "not a Fargate cpu size"),
    ("cpu-not-number", {**BASE_CONFIG, "cpu": "half"}, None, "cpu", "not a whole number"),
    ("memory-too-small", {**BASE_CONFIG, "cpu": "1024", "memory": "1024"}, None, "memory", "does not go with cpu"),
    ("memory-off-step", {**BASE_CONFIG, "cpu": "512", "memory": "1500"}, None, "memory", "does not go with cpu"),
    ("architecture", {**BASE_CONFIG, "cpuArchitecture": "arm64v8"}, None, "cpuArchitecture", "not valid"),
    ("desired-negative", {**BASE_CONFIG, "desiredCount": "-1"}, None, "desiredCount", "out of range"),
    ("retention-never", {**BASE_CONFIG, "logRetentionDays": "0"}, None, "logRetentionDays", "logs must expire"),
    ("retention-odd", {**BASE_CONFIG, "logRetentionDays": "10"}, None, "logRetentionDays", "not a period"),
    ("log-level", {**BASE_CONFIG, "logLevel": "verbose"}, None, "logLevel", "not valid"),
    ("vpc-id-shape", {**BASE_CONFIG, "vpcId": "my-vpc"}, None, "vpcId", "not valid"),
    ("subnets-without-vpc", {**BASE_CONFIG, "subnetIds": f'["{SUBNET}"]'}, None, "subnetIds", "vpcId is not"),
    ("groups-without-vpc", {**BASE_CONFIG, "securityGroupIds": f'["{SG}"]'}, None, "securityGroupIds",
     "vpcId is not"),
    ("subnet-id-shape", {**BASE_CONFIG, "vpcId": VPC, "subnetIds": '["sub-1"]'}, None, "subnetIds", "not subnet ids"),
    ("groups-comma-separated", {**BASE_CONFIG, "vpcId": VPC, "securityGroupIds": f"{SG},{SG}"}, None,
     "securityGroupIds", "not sg ids"),
    ("no-public-ip-default-vpc", {**BASE_CONFIG, "assignPublicIp": "false"}, None, "assignPublicIp", "NAT"),
    ("public-ip-not-bool", {**BASE_CONFIG, "assignPublicIp": "yes"}, None, "assignPublicIp", "not a boolean"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "secret_keys", "key", "problem"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])  # fmt: skip
def test_invalid_config_fails_clearly_before_any_resource(
    config: dict[str, str], secret_keys: list[str] | None, key: str, problem: str
) -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program(config, secret_keys, mocks=mocks)
    message = str(raised.value)
    line = next(line for line in message.splitlines() if f"{PROJECT}:{key}:" in line)
    assert problem in line
    assert "Allowed:" in line
    assert "pulumi config set" in line or "pulumi config rm" in line
    assert API_KEY not in message
    assert mocks.resources == []


def test_every_problem_is_reported_at_once() -> None:
    config = {**BASE_CONFIG, "cpu": "300", "logLevel": "loud", "desiredCount": "-2"}
    with pytest.raises(ConfigError) as raised:
        run_program(config)
    for key in ("cpu", "logLevel", "desiredCount"):
        assert f"{PROJECT}:{key}:" in str(raised.value)


def test_plaintext_key_message_does_not_echo_the_key() -> None:
    with pytest.raises(ConfigError) as raised:
        run_program(BASE_CONFIG, secret_keys=[])
    assert "pulumi config set --secret prefect-fargate:prefectApiKey" in str(raised.value)
    assert API_KEY not in str(raised.value)


def test_cloud_ids_make_the_cloud_api_url() -> None:
    loaded = load_stack_config(BASE_CONFIG)
    assert loaded.prefect_api_url == CLOUD_URL.format(
        BASE_CONFIG["prefectAccountId"], BASE_CONFIG["prefectWorkspaceId"]
    )


def test_self_hosted_url_is_taken_as_given() -> None:
    config = {**without("prefectAccountId", "prefectWorkspaceId"), "prefectApiUrl": "http://prefect.internal:4200/api/"}
    assert load_stack_config(config).prefect_api_url == "http://prefect.internal:4200/api"


def test_own_vpc_with_lists_as_the_cli_sends_them() -> None:
    config = {
        **BASE_CONFIG,
        "vpcId": VPC,
        "subnetIds": f'["{SUBNET}", "subnet-0123456789abcdef1"]',
        "securityGroupIds": f'["{SG}", "sg-0123456789abcdef1"]',
        "assignPublicIp": "false",
    }
    assert load_stack_config(config).network == NetworkConfig(
        vpc_id=VPC,
        subnet_ids=(SUBNET, "subnet-0123456789abcdef1"),
        security_group_ids=(SG, "sg-0123456789abcdef1"),
        assign_public_ip=False,
    )


def test_arm64_builds_for_arm() -> None:
    assert load_stack_config({**BASE_CONFIG, "cpuArchitecture": "ARM64"}).docker_platform == "linux/arm64"


@pytest.mark.parametrize("cpu", sorted(FARGATE_SIZES))
def test_every_fargate_pair_is_accepted(cpu: int) -> None:
    for memory in (FARGATE_SIZES[cpu][0], FARGATE_SIZES[cpu][-1]):
        assert load_stack_config({**BASE_CONFIG, "cpu": str(cpu), "memory": str(memory)}).size == TaskSize(
            cpu=cpu, memory=memory
        )


def test_pulumi_yaml_declares_every_key_with_the_programs_defaults() -> None:
    """The CLI applies Pulumi.yaml's defaults; the program's own must be the same ones."""
    declared = yaml.safe_load(Path(ROOT / "Pulumi.yaml").read_text())["config"]
    defaults = load_stack_config(BASE_CONFIG)
    expected = {
        "workPool": defaults.work_pool,
        "cpu": defaults.size.cpu,
        "memory": defaults.size.memory,
        "cpuArchitecture": defaults.cpu_architecture,
        "desiredCount": defaults.desired_count,
        "logRetentionDays": defaults.log_retention_days,
        "logLevel": defaults.log_level,
        "assignPublicIp": defaults.network.assign_public_ip,
        "vpcId": "",
        "subnetIds": [],
        "securityGroupIds": [],
        "prefectAccountId": "",
        "prefectWorkspaceId": "",
        "prefectApiUrl": "",
    }
    for key, value in expected.items():
        assert declared[key]["default"] == value, key
        assert declared[key]["description"]


def test_cli_lets_a_missing_or_plaintext_key_reach_the_programs_message() -> None:
    """The Pulumi CLI checks Pulumi.yaml before the program runs (pkg/workspace/config.go, mergeConfig and
    validateStackConfigValue): a declared key with no default and no value stops it as "missing configuration
    value", a `secret: true` key holding plaintext as "must be encrypted", each without a fix. prefectApiKey
    declares neither, so what a user sees is the program's message with the command to run."""
    spec = yaml.safe_load(Path(ROOT / "Pulumi.yaml").read_text())["config"]["prefectApiKey"]
    assert "default" in spec and not spec.get("secret")
    for config, secret_keys in (({**BASE_CONFIG, "prefectApiKey": spec["default"]}, []), (BASE_CONFIG, [])):
        with pytest.raises(ConfigError) as raised:
            run_program(config, secret_keys)
        assert "pulumi config set --secret prefect-fargate:prefectApiKey" in str(raised.value)


def test_pulumi_yaml_defaults_pass_validation() -> None:
    """What the CLI sends for an untouched stack (empty strings, `[]`) is valid."""
    declared = yaml.safe_load(Path(ROOT / "Pulumi.yaml").read_text())["config"]
    as_cli_sends = {
        key: (str(spec["default"]).lower() if isinstance(spec["default"], bool) else
              "[]" if spec["default"] == [] else str(spec["default"]))
        for key, spec in declared.items() if "default" in spec
    }  # fmt: skip
    loaded = load_stack_config({**as_cli_sends, **BASE_CONFIG})
    assert loaded.network == NetworkConfig()
