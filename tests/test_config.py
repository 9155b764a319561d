"""Stack config: every bad value fails before any resource exists, naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
import yaml
from conftest import (
    ACCOUNT_ID,
    API_KEY,
    BASE_CONFIG,
    PROJECT,
    ROOT,
    WORKSPACE_ID,
    RecordingMocks,
    load_stack_config,
    resolve,
    run_program,
)

from components.config import (
    ConfigError,
    NetworkConfig,
    TaskSize,
    WorkerImage,
)

VPC = "vpc-0123456789abcdef0"
SUBNET = "subnet-0123456789abcdef0"
SG = "sg-0123456789abcdef0"
CLOUD_URL = "https://api.prefect.cloud/api/accounts/{}/workspaces/{}"
CLOUD_KEYS = ("prefectAccountId", "prefectWorkspaceId")
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DIGEST = "sha256:" + "ab" * 32
LOGIN_KEY = "workerImageRegistryCredentialsSecretArn"
LOGIN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:registry-login-Ab12Cd"
CLOUD_UI_URL = f"https://app.prefect.cloud/account/{ACCOUNT_ID}/workspace/{WORKSPACE_ID}/deployments?tab=all"


def without(*keys: str) -> dict[str, str]:
    return {k: v for k, v in BASE_CONFIG.items() if k not in keys}


AUTH_STRING = "admin:Secret-Pass-That-Must-Never-Leak"
SELF_HOSTED = {"prefectApiUrl": "http://prefect.internal:4200/api", "prefectApiAuthString": AUTH_STRING}

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
    ("url-apii", {**without(*CLOUD_KEYS), "prefectApiUrl": "https://prefect.example.com/apii"}, None,
     "prefectApiUrl", "not a Prefect API URL"),
    ("url-api-not-last", {**without(*CLOUD_KEYS), "prefectApiUrl": "https://x.io/api/flows"}, None,
     "prefectApiUrl", "not a Prefect API URL"),
    ("cloud-url-without-workspace", {**without(*CLOUD_KEYS), "prefectApiUrl": "https://api.prefect.cloud/api"},
     None, "prefectApiUrl", "not a Prefect API URL"),
    ("cloud-ui-url", {**without(*CLOUD_KEYS), "prefectApiUrl": CLOUD_UI_URL}, None, "prefectApiUrl",
     "the Prefect Cloud UI's address"),
    ("cloud-url-without-key", {"prefectApiUrl": CLOUD_URL.format(ACCOUNT_ID, WORKSPACE_ID)}, None,
     "prefectApiKey", "Prefect Cloud needs one"),
    ("auth-string-and-key", {**SELF_HOSTED, "prefectApiKey": API_KEY}, ["prefectApiKey", "prefectApiAuthString"],
     "prefectApiAuthString", "together with prefectApiKey"),
    ("auth-string-for-cloud", {**BASE_CONFIG, "prefectApiAuthString": AUTH_STRING}, ["prefectApiAuthString"],
     "prefectApiAuthString", "Prefect Cloud's"),
    ("auth-string-plaintext", SELF_HOSTED, [], "prefectApiAuthString", "plaintext"),
    ("auth-string-newline", {**SELF_HOSTED, "prefectApiAuthString": AUTH_STRING + "\n"}, ["prefectApiAuthString"],
     "prefectApiAuthString", "whitespace"),
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
    ("image-tag-only", {**BASE_CONFIG, "workerImage": f"{ECR}/worker:latest"}, None, "workerImage",
     "not pinned by a sha256 digest"),
    ("image-short-digest", {**BASE_CONFIG, "workerImage": f"{ECR}/worker@sha256:abc123"}, None, "workerImage",
     "not pinned by a sha256 digest"),
    ("image-tag-and-digest", {**BASE_CONFIG, "workerImage": f"{ECR}/worker:1.0@{DIGEST}"}, None, "workerImage",
     "not an image reference"),
    ("image-uppercase", {**BASE_CONFIG, "workerImage": f"{ECR}/Worker@{DIGEST}"}, None, "workerImage",
     "not an image reference"),
    ("image-no-registry", {**BASE_CONFIG, "workerImage": f"prefecthq/prefect@{DIGEST}"}, None, "workerImage",
     "names no registry"),
    ("image-not-ecr-without-login", {**BASE_CONFIG, "workerImage": f"ghcr.io/org/worker@{DIGEST}"}, None,
     "workerImage", "not in a private ECR registry"),
    ("login-with-ecr-image", {**BASE_CONFIG, "workerImage": f"{ECR}/worker@{DIGEST}", LOGIN_KEY: LOGIN}, None,
     LOGIN_KEY, "is in ECR"),
    ("login-without-image", {**BASE_CONFIG, LOGIN_KEY: LOGIN}, None, LOGIN_KEY, "workerImage is not"),
    ("login-not-an-arn", {**BASE_CONFIG, "workerImage": f"ghcr.io/org/worker@{DIGEST}", LOGIN_KEY: "ghcr-login"},
     None, LOGIN_KEY, "not the full ARN"),
    ("login-partial-arn", {**BASE_CONFIG, "workerImage": f"ghcr.io/org/worker@{DIGEST}", LOGIN_KEY: LOGIN[:-7]},
     None, LOGIN_KEY, "not the full ARN"),
    ("login-not-secrets-manager", {**BASE_CONFIG, "workerImage": f"ghcr.io/org/worker@{DIGEST}",
     LOGIN_KEY: LOGIN.replace("secretsmanager", "ssm")}, None, LOGIN_KEY, "not the full ARN"),
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
    assert API_KEY not in message and AUTH_STRING not in message
    assert mocks.resources == []


@pytest.mark.parametrize(
    ("image", "login", "expected"),
    [
        (f"{ECR}/team/worker@{DIGEST}", None,
         WorkerImage(reference=f"{ECR}/team/worker@{DIGEST}", registry=ECR, repository="team/worker",
                     ecr_account="123456789012", ecr_region="us-east-1")),
        (f"210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn/worker@{DIGEST}", None,
         WorkerImage(reference=f"210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn/worker@{DIGEST}",
                     registry="210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn", repository="worker",
                     ecr_account="210987654321", ecr_region="cn-north-1")),
        (f"registry.example.com:5000/team/worker@{DIGEST}", LOGIN,
         WorkerImage(reference=f"registry.example.com:5000/team/worker@{DIGEST}",
                     registry="registry.example.com:5000", repository="team/worker", credentials_secret_arn=LOGIN)),
        (f"docker.io/example/worker@{DIGEST}", LOGIN,
         WorkerImage(reference=f"docker.io/example/worker@{DIGEST}", registry="docker.io", repository="example/worker",
                     credentials_secret_arn=LOGIN)),
    ],
    ids=["ecr", "ecr-china", "registry-with-port", "docker-hub"],
)  # fmt: skip
def test_a_digest_pinned_worker_image_is_read_into_its_parts(
    image: str, login: str | None, expected: WorkerImage
) -> None:
    config = {**BASE_CONFIG, "workerImage": image, **({LOGIN_KEY: login} if login else {})}
    assert load_stack_config(config).worker_image == expected
    assert load_stack_config(BASE_CONFIG).worker_image is None


def test_a_bad_worker_image_gets_the_command_with_the_shape_to_set() -> None:
    with pytest.raises(ConfigError) as raised:
        load_stack_config({**BASE_CONFIG, "workerImage": "prefect-worker:latest"})
    assert f"pulumi config set {PROJECT}:workerImage {ECR}/prefect-worker@sha256:" in str(raised.value)


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


def test_a_pasted_cloud_ui_url_gets_the_commands_that_set_its_ids() -> None:
    with pytest.raises(ConfigError) as raised:
        load_stack_config({**without(*CLOUD_KEYS), "prefectApiUrl": CLOUD_UI_URL})
    assert (
        f"Fix: pulumi config rm {PROJECT}:prefectApiUrl"
        f" && pulumi config set {PROJECT}:prefectAccountId {ACCOUNT_ID}"
        f" && pulumi config set {PROJECT}:prefectWorkspaceId {WORKSPACE_ID}"
    ) in str(raised.value)
    # What those commands set is accepted, and builds the API URL.
    assert load_stack_config(BASE_CONFIG).prefect_api_url == CLOUD_URL.format(ACCOUNT_ID, WORKSPACE_ID)


@pytest.mark.parametrize(
    "url",
    [
        "http://prefect.internal:4200/api",
        "https://tools.example.com/prefect/api/",
        CLOUD_URL.format(ACCOUNT_ID, WORKSPACE_ID),
    ],
)
def test_api_urls_ending_in_the_api_path_are_taken(url: str) -> None:
    assert load_stack_config({**without(*CLOUD_KEYS), "prefectApiUrl": url}).prefect_api_url == url.rstrip("/")


def test_self_hosted_server_without_auth_needs_no_key_and_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_, **__: warnings.append(message))
    open_server = {"prefectApiUrl": "http://prefect.internal:4200/api"}
    assert load_stack_config(open_server).prefect_credential is None
    (warning,) = warnings
    assert f"{PROJECT}:prefectApiKey is not set" in warning
    assert "http://prefect.internal:4200/api" in warning and "open to anything that can reach it" in warning
    assert f"pulumi config set --secret {PROJECT}:prefectApiKey" in warning
    warnings.clear()
    assert resolve(load_stack_config({**open_server, "prefectApiKey": API_KEY}).prefect_credential.value) == API_KEY
    assert warnings == []  # a self-hosted server that checks keys gets one, without the warning


def test_a_self_hosted_auth_string_is_the_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_, **__: warnings.append(message))
    credential = load_stack_config(SELF_HOSTED, ["prefectApiAuthString"]).prefect_credential
    assert (credential.config_key, credential.env_name) == ("prefectApiAuthString", "PREFECT_API_AUTH_STRING")
    assert resolve(credential.value) == AUTH_STRING
    assert warnings == []  # not an open server


def test_both_credentials_name_the_fix_without_either_value() -> None:
    with pytest.raises(ConfigError) as raised:
        load_stack_config({**SELF_HOSTED, "prefectApiKey": API_KEY}, ["prefectApiKey", "prefectApiAuthString"])
    message = str(raised.value)
    assert f"pulumi config rm {PROJECT}:prefectApiKey" in message
    assert API_KEY not in message and AUTH_STRING not in message


def test_a_mistyped_self_hosted_url_is_the_only_error_without_a_key() -> None:
    """No key is fine for a self-hosted server: a bad URL there must not also ask for a key."""
    with pytest.raises(ConfigError) as raised:
        load_stack_config({"prefectApiUrl": "http://prefect.internal:4200/apii"})
    assert [line for line in str(raised.value).splitlines() if line.startswith("  - ")] == [
        f"  - {PROJECT}:prefectApiUrl: 'http://prefect.internal:4200/apii' is not a Prefect API URL. Allowed: "
        "the http(s) URL of a Prefect server's API, its path ending in /api. "
        f"Fix: pulumi config set {PROJECT}:prefectApiUrl http://prefect.internal:4200/api"
    ]


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


# AWS's table of Fargate task sizes (Linux), transcribed by hand, in GB as AWS writes it: the ECS
# developer guide, "Task CPU and memory" (fargate-tasks-services.html#fargate-tasks-size), and the
# `memory` parameter of RegisterTaskDefinition in the ECS API reference. Not read from the code.
FARGATE_TABLE_GB: dict[int, tuple[float, ...]] = {
    256: (0.5, 1, 2),
    512: (1, 2, 3, 4),
    1024: (2, 3, 4, 5, 6, 7, 8),
    2048: (4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16),  # 4 to 16 GB in 1-GB increments
    4096: (8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30),  # 8-30 by 1
    8192: (16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60),  # 16 to 60 GB in 4-GB increments
    16384: (32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120),  # 32 to 120 GB in 8-GB increments
}
# Per cpu, memory (MiB) next to the table that Fargate refuses: below the smallest, off the step
# between two valid sizes, above the largest.
FARGATE_REFUSED_MIB: dict[int, tuple[int, int, int]] = {
    256: (256, 1536, 3072),
    512: (512, 1536, 5120),
    1024: (1024, 2560, 9216),
    2048: (3072, 4608, 17408),
    4096: (7168, 8704, 31744),
    8192: (15360, 17408, 65536),  # 17 GB: a 1-GB step, which only smaller cpus allow
    16384: (31744, 36864, 131072),  # 36 GB: a 4-GB step, which only 8192 allows
}
# The two keys pairs validated by the same rule: the worker's task, and an `ecs` pool's flow-run tasks.
SIZE_KEYS = {"worker": ("cpu", "memory", {}), "flow-run": ("flowRunCpu", "flowRunMemory", {"workPoolType": "ecs"})}


@pytest.mark.parametrize("keys", SIZE_KEYS.values(), ids=SIZE_KEYS.keys())
@pytest.mark.parametrize("cpu", FARGATE_TABLE_GB)
def test_every_size_in_awss_table_is_accepted(cpu: int, keys: tuple[str, str, dict[str, str]]) -> None:
    cpu_key, memory_key, extra = keys
    field = "size" if cpu_key == "cpu" else "flow_run_size"
    for gigabytes in FARGATE_TABLE_GB[cpu]:
        memory = int(gigabytes * 1024)
        loaded = load_stack_config({**BASE_CONFIG, **extra, cpu_key: str(cpu), memory_key: str(memory)})
        assert getattr(loaded, field) == TaskSize(cpu=cpu, memory=memory)


@pytest.mark.parametrize("keys", SIZE_KEYS.values(), ids=SIZE_KEYS.keys())
@pytest.mark.parametrize("cpu", FARGATE_REFUSED_MIB)
def test_sizes_next_to_awss_table_are_refused(cpu: int, keys: tuple[str, str, dict[str, str]]) -> None:
    cpu_key, memory_key, extra = keys
    for memory in FARGATE_REFUSED_MIB[cpu]:
        with pytest.raises(ConfigError) as raised:
            load_stack_config({**BASE_CONFIG, **extra, cpu_key: str(cpu), memory_key: str(memory)})
        assert f"{PROJECT}:{memory_key}: {memory} MiB does not go with {cpu_key} {cpu}" in str(raised.value)


@pytest.mark.parametrize("cpu", [128, 300, 3072, 32768])
def test_cpus_fargate_does_not_offer_are_refused(cpu: int) -> None:
    with pytest.raises(ConfigError) as raised:
        load_stack_config({**BASE_CONFIG, "cpu": str(cpu)})
    assert f"{PROJECT}:cpu: {cpu} is not a Fargate cpu size" in str(raised.value)


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
        "workerImage": "",
        "retryCrashedRuns": defaults.retry_crashed_runs,
        LOGIN_KEY: "",
    }
    for key, value in expected.items():
        assert declared[key]["default"] == value, key
        assert declared[key]["description"]
    # Optional for the CLI (a self-hosted server without auth needs no key): with `secret: true` the CLI
    # would refuse an unset key, as it checks the plaintext default against it (pulumi/pulumi,
    # sdk/go/common/workspace/config.go, mergeConfig and validateStackConfigValue). The program
    # refuses a plaintext key itself (case key-plaintext above).
    for key in ("prefectApiKey", "prefectApiAuthString"):
        assert declared[key]["default"] == ""
        assert "secret" not in declared[key]


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


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [("proces", "process"), ("Process", "process"), ("ecss", "ecs"), ("ECS", "ecs"), ("ec2", "ecs")],
)
def test_a_mistyped_work_pool_type_gets_the_nearest_value(typed: str, suggested: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_stack_config({**BASE_CONFIG, "workPoolType": typed})
    assert f"Fix: pulumi config set {PROJECT}:workPoolType {suggested}" in str(raised.value)


@pytest.mark.parametrize(
    ("pasted_into", "url", "both_ids"),
    [
        ("prefectAccountId", CLOUD_UI_URL, True),
        ("prefectAccountId", f"app.prefect.cloud/account/{ACCOUNT_ID}", False),
        ("prefectWorkspaceId", CLOUD_URL.format(ACCOUNT_ID, WORKSPACE_ID), True),
    ],
    ids=["ui-url-in-account", "ui-url-without-scheme", "api-url-in-workspace"],
)
def test_a_cloud_url_pasted_into_an_id_key_gets_the_id_in_it(pasted_into: str, url: str, both_ids: bool) -> None:
    """As the prefectApiUrl refusal does: the fix sets the ids the pasted URL holds, for the other (unset) key too."""
    other = next(key for key in CLOUD_KEYS if key != pasted_into)
    with pytest.raises(ConfigError) as raised:
        load_stack_config({**without(other), pasted_into: url})
    message = str(raised.value)
    ids = {"prefectAccountId": ACCOUNT_ID, "prefectWorkspaceId": WORKSPACE_ID}
    assert f"{PROJECT}:{pasted_into}: {url!r} is a Prefect Cloud URL, not the id in it" in message
    assert f"Fix: pulumi config set {PROJECT}:{pasted_into} {ids[pasted_into]}" in message
    other_fix = f"Fix: pulumi config set {PROJECT}:{other} {ids[other] if both_ids else '<uuid>'}"
    assert other_fix in message
