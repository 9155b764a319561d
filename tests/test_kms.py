"""Config kmsKeyArn: the user's key on every resource holding data, kms:Decrypt through one service per role,
and nothing changed without it."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import cloudformation_render
import pulumi
import pytest
from cloudformation_render import CASES
from conftest import ACCOUNT, BASE_CONFIG, PROJECT, REGION, ROOT, STACK, RecordingMocks, Run, run_program
from test_aws_shapes import POLICY_CONFIGS, policy_problems, registered_policies

from components.alert_notifier import notifier_function_name
from components.config import ConfigError, load_config
from components.kms import PUBLISH_ACTIONS, key_policy_statements
from components.stack_controller import function_name

KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CONFIGS = {"process": BASE_CONFIG, "ecs": {**BASE_CONFIG, "workPoolType": "ecs"}}

# What each resource gets from the key, by (type, resource name): the inputs that differ from a run without it.
SECRET = ("aws:secretsmanager/secret:Secret", "prefect-api-key-secret")
WORKER_LOGS = ("aws:cloudwatch/logGroup:LogGroup", "prefect-worker-logs")
STOP_LOGS = ("aws:cloudwatch/logGroup:LogGroup", "prefect-alerts-stopped-tasks")
CONTROLLER_LOGS = ("aws:cloudwatch/logGroup:LogGroup", "prefect-controller-logs")
NOTIFIER_LOGS = ("aws:cloudwatch/logGroup:LogGroup", "prefect-alerts-notifier-logs")
BUCKET_SSE = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "prefect-flows-encryption",
)
TOPIC = ("aws:sns/topic:Topic", "prefect-alerts-topic")
QUEUES = [
    ("aws:sqs/queue:Queue", "prefect-ecs-events-queue"),
    ("aws:sqs/queue:Queue", "prefect-ecs-events-dlq"),
]
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
DECRYPT = "kms:Decrypt"
# The role policies that gain a KMS statement, and its (Sid, service, actions) for each pool type: the readers
# decrypt; the alert notifier and the stack controller (its failed-run notices), which publish to the topic, also make
# data keys (PUBLISH_ACTIONS).
ALERTS_PUBLISHER = {"prefect-alerts-notifier-policy": [("AlertTopicKey", "sns", PUBLISH_ACTIONS)]}
KMS_STATEMENTS = {
    "process": {
        "prefect-roles-execution-policy": [("ApiKeyKey", "secretsmanager", DECRYPT)],
        "prefect-roles-task-policy": [("FlowCodeKey", "s3", DECRYPT)],
        "prefect-controller-policy": [
            ("AlertTopicKey", "sns", PUBLISH_ACTIONS),
            ("CredentialKey", "secretsmanager", DECRYPT),
        ],
        **ALERTS_PUBLISHER,
    },
    "ecs": {
        "prefect-roles-execution-policy": [("ApiKeyKey", "secretsmanager", DECRYPT)],
        "prefect-ecs-pool-flow-run-policy": [("FlowCodeKey", "s3", DECRYPT)],
        "prefect-ecs-pool-worker-policy": [("ObserverQueueKey", "sqs", DECRYPT)],
        "prefect-controller-policy": [
            ("AlertTopicKey", "sns", PUBLISH_ACTIONS),
            ("CredentialKey", "secretsmanager", DECRYPT),
        ],
        **ALERTS_PUBLISHER,
    },
}


def by_name(run: Run) -> dict[tuple[str, str], dict[str, Any]]:
    """Inputs by resource; an archive (the controller's code) as the files it holds, which is what it ships."""

    def plain(value: Any) -> Any:
        return {k: v.path for k, v in value.assets.items()} if isinstance(value, pulumi.AssetArchive) else value

    return {(r.typ, r.name): {k: plain(v) for k, v in r.plain_inputs.items()} for r in run.resources}


def changed_inputs(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def kms_statements(policy: str) -> list[dict[str, Any]]:
    """The statements of a policy document that grant any KMS action."""
    statements = json.loads(policy)["Statement"]
    actions = [[s["Action"]] if isinstance(s["Action"], str) else s["Action"] for s in statements]
    return [s for s, acts in zip(statements, actions, strict=True) if any(a.startswith("kms:") for a in acts)]


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, bool], Run]:
    return {
        (case, with_key): run_program({**config, "kmsKeyArn": KEY} if with_key else config)
        for case, config in CONFIGS.items()
        for with_key in (False, True)
    }


@pytest.mark.parametrize("case", CONFIGS)
def test_without_a_key_aws_managed_encryption_stays(case: str, runs: dict[tuple[str, bool], Run]) -> None:
    resources = by_name(runs[case, False])
    assert "kmsKeyId" not in resources[SECRET] and "kmsKeyId" not in resources[WORKER_LOGS]
    (rule,) = resources[BUCKET_SSE]["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    assert resources[TOPIC]["kmsMasterKeyId"] == "alias/aws/sns"  # AWS's, free: no key of the stack's own
    for queue in QUEUES if case == "ecs" else []:
        assert resources[queue]["sqsManagedSseEnabled"] is True and "kmsMasterKeyId" not in resources[queue]
    for (typ, _), inputs in resources.items():
        if typ == ROLE_POLICY:
            assert kms_statements(inputs["policy"]) == []


@pytest.mark.parametrize("case", CONFIGS)
def test_with_a_key_exactly_the_data_resources_and_their_readers_change(
    case: str, runs: dict[tuple[str, bool], Run]
) -> None:
    before, after = by_name(runs[case, False]), by_name(runs[case, True])
    assert before.keys() == after.keys(), "the key changes resources' inputs, never which resources exist"
    changed = {name: changed_inputs(before[name], after[name]) for name in after}
    changed = {name: keys for name, keys in changed.items() if keys}
    expected = {
        SECRET: {"kmsKeyId"},
        WORKER_LOGS: {"kmsKeyId"},
        STOP_LOGS: {"kmsKeyId"},
        CONTROLLER_LOGS: {"kmsKeyId"},
        NOTIFIER_LOGS: {"kmsKeyId"},
        BUCKET_SSE: {"rules"},
        TOPIC: {"kmsMasterKeyId"},
        **{queue: {"kmsMasterKeyId", "sqsManagedSseEnabled"} for queue in (QUEUES if case == "ecs" else [])},
        **{(ROLE_POLICY, policy): {"policy"} for policy in KMS_STATEMENTS[case]},
    }
    assert changed == expected
    for resource in (SECRET, WORKER_LOGS, STOP_LOGS, CONTROLLER_LOGS, NOTIFIER_LOGS):
        assert after[resource]["kmsKeyId"] == KEY
    assert after[TOPIC]["kmsMasterKeyId"] == KEY
    for queue in QUEUES if case == "ecs" else []:
        assert after[queue]["kmsMasterKeyId"] == KEY and "sqsManagedSseEnabled" not in after[queue]
    (rule,) = after[BUCKET_SSE]["rules"]
    assert rule == {
        "applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY},
        "bucketKeyEnabled": True,
    }


@pytest.mark.parametrize("case", CONFIGS)
def test_each_reader_gets_decrypt_on_the_key_through_its_service_only(
    case: str, runs: dict[tuple[str, bool], Run]
) -> None:
    before, after = by_name(runs[case, False]), by_name(runs[case, True])
    for name, expected in KMS_STATEMENTS[case].items():
        statements = kms_statements(after[ROLE_POLICY, name]["policy"])
        assert statements == [
            {
                "Sid": sid,
                "Effect": "Allow",
                "Action": actions,
                "Resource": KEY,
                "Condition": {"StringEquals": {"kms:ViaService": f"{service}.{REGION}.amazonaws.com"}},
            }
            for sid, service, actions in expected
        ]
        # Added to what the role had; nothing else in it changed.
        rest = [s for s in json.loads(after[ROLE_POLICY, name]["policy"])["Statement"] if s not in statements]
        assert rest == json.loads(before[ROLE_POLICY, name]["policy"])["Statement"]


def test_no_secret_no_secret_decrypt() -> None:
    """A self-hosted server without auth has no secret: the execution role gets no KMS statement."""
    run = run_program({**POLICY_CONFIGS["open-server"], "kmsKeyArn": KEY})
    assert kms_statements(run.one(ROLE_POLICY, "execution-policy").plain_inputs["policy"]) == []
    assert kms_statements(run.one(ROLE_POLICY, "task-policy").plain_inputs["policy"]) != []


@pytest.mark.parametrize("case", CONFIGS)
def test_policies_with_a_key_pass_the_policy_checks(case: str, runs: dict[tuple[str, bool], Run]) -> None:
    assert policy_problems(registered_policies(runs[case, True])) == []


def key_policy(statements: list[dict[str, Any]]) -> str:
    """A whole key policy: the default one's account statement (which lets IAM policies grant the key) and these."""
    root = {
        "Sid": "EnableIAMUserPermissions",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [root, *statements]})


@pytest.mark.parametrize("case", CONFIGS)
def test_the_key_policy_statements_are_the_stacks_and_valid(case: str, runs: dict[tuple[str, bool], Run]) -> None:
    run = runs[case, True]
    statements = json.loads(run.outputs["kmsKeyPolicyStatements"])
    assert statements == key_policy_statements(
        partition="aws", region=REGION, account=ACCOUNT, stack=STACK, ecs_pool=case == "ecs",
        functions=[function_name(STACK), notifier_function_name(STACK)],
    )  # fmt: skip
    assert policy_problems({"user-key": ("aws:kms/key:Key", key_policy(statements))}) == []
    # Logs' statement covers the stack's log groups, by the ARN CloudWatch Logs puts in the encryption context.
    (logs,) = [s for s in statements if s["Principal"]["Service"] == f"logs.{REGION}.amazonaws.com"]
    patterns = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    for resource in (WORKER_LOGS, STOP_LOGS, CONTROLLER_LOGS, NOTIFIER_LOGS):  # every log group the key encrypts
        arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{by_name(run)[resource]['name']}"
        assert any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), arn) for p in patterns), arn
    services = {s["Principal"]["Service"] for s in statements}
    assert ("events.amazonaws.com" in services) == (case == "ecs")
    assert "cloudwatch.amazonaws.com" not in services  # the alarms reach the topic through the notifier's role
    assert "kmsKeyPolicyStatements" not in runs[case, False].outputs


def test_docs_print_the_key_policy_statements() -> None:
    """docs/security.md's statements are the program's, for an `ecs` pool with alarms (the most a stack needs)."""
    page = (ROOT / "docs" / "security.md").read_text()
    block = re.search(r"<!-- kms-key-policy -->\n```json\n(.*?)\n```", page, re.S)
    assert block, "docs/security.md has the key policy statements block"
    placeholders = {"partition": "aws", "region": "<region>", "account": "<account-id>", "stack": "<stack>"}
    functions = [function_name(placeholders["stack"]), notifier_function_name(placeholders["stack"])]
    assert json.loads(block[1]) == key_policy_statements(**placeholders, ecs_pool=True, functions=functions)


VALID = [KEY, f"arn:aws-us-gov:kms:us-gov-west-1:{ACCOUNT}:key/mrk-1234abcd12ab34cd56ef1234567890ab"]
# (case id, value, text in the problem, text in the fix)
INVALID = [
    ("alias-arn", f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/prefect", "is an alias",
     f"aws kms describe-key --key-id arn:aws:kms:{REGION}:{ACCOUNT}:alias/prefect --query KeyMetadata.Arn"),
    ("alias-name", "alias/prefect", "is an alias", "aws kms describe-key --key-id alias/prefect"),
    ("key-id-only", "1234abcd-12ab-34cd-56ef-1234567890ab", "is not a KMS key ARN",
     "aws kms describe-key --key-id 1234abcd-12ab-34cd-56ef-1234567890ab"),
    ("not-kms", f"arn:aws:s3:::{ACCOUNT}-bucket", "is not a KMS key ARN", "arn:aws:kms:<region>:<account>:key/"),
    ("short-id", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234", "is not a KMS key ARN", "arn:aws:kms:<region>"),
    ("bad-account", f"arn:aws:kms:{REGION}:1234:key/1234abcd-12ab-34cd-56ef-1234567890ab", "is not a KMS key ARN",
     "arn:aws:kms:<region>"),
]  # fmt: skip


def load(config: dict[str, str], region: str | None = None) -> Any:
    asyncio.set_event_loop(asyncio.new_event_loop())
    full = {f"{PROJECT}:{k}": v for k, v in config.items()}
    pulumi.runtime.set_all_config({**full, **({"aws:region": region} if region else {})}, [f"{PROJECT}:prefectApiKey"])
    return load_config()


@pytest.mark.parametrize("arn", VALID)
def test_key_arns_are_accepted(arn: str) -> None:
    assert load({**BASE_CONFIG, "kmsKeyArn": arn}).kms_key_arn == arn


def test_unset_key_means_none() -> None:
    assert load({**BASE_CONFIG, "kmsKeyArn": ""}).kms_key_arn is None


@pytest.mark.parametrize(("value", "problem", "fix"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_key_arns_are_refused_with_the_fix(value: str, problem: str, fix: str) -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as raised:
        run_program({**BASE_CONFIG, "kmsKeyArn": value}, mocks=mocks)
    (line,) = [line for line in str(raised.value).splitlines() if f"{PROJECT}:kmsKeyArn:" in line]
    assert problem in line
    assert f"Fix: pulumi config set {PROJECT}:kmsKeyArn " in line and fix in line
    assert mocks.resources == []


def test_a_key_in_another_region_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        load({**BASE_CONFIG, "kmsKeyArn": KEY}, region="eu-west-1")
    message = str(raised.value)
    assert f"{PROJECT}:kmsKeyArn: the key is in {REGION}, the stack in eu-west-1" in message
    assert f"pulumi config set {PROJECT}:kmsKeyArn arn:aws:kms:eu-west-1:{ACCOUNT}:key/<key-id>" in message
    assert load({**BASE_CONFIG, "kmsKeyArn": KEY}, region=REGION).kms_key_arn == KEY


@pytest.mark.parametrize("case", CASES)
def test_the_template_scanners_read_is_valid_cloudformation(case: str) -> None:
    """docs/security.md's checkov results are only as good as this rendering: cfn-lint finds no error in it
    (a warning stays: the egress rule's ports 0-0 with protocol -1, as the program sets them)."""
    from cfnlint.api import ManualArgs, lint

    rendered = cloudformation_render.template(run_program(CASES[case]))
    types = {resource["Type"] for resource in rendered["Resources"].values()}
    assert {"AWS::S3::Bucket", "AWS::SecretsManager::Secret", "AWS::Logs::LogGroup", "AWS::IAM::Role"} <= types
    errors = [m for m in lint(json.dumps(rendered), config=ManualArgs(regions=[REGION])) if m.rule.id.startswith("E")]
    assert [f"{m.rule.id} {m.path}: {m.message}" for m in errors] == []
