"""`python -m devtools.check_config`: a stack file checked under the mocks, as `pulumi up` would check it."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import ACCOUNT_ID, ROOT, WORKSPACE_ID

from components.agent_service import run_limit
from devtools import check_config
from devtools.costs import fargate_hour, monthly_estimate

# What `pulumi config set --secret` stores: ciphertext only the CLI (and its secrets provider) can decrypt.
CIPHERTEXT = "v1:Zm9vYmFy:c2VjcmV0LXRoYXQtY2Fubm90LWJlLWRlY3J5cHRlZA=="


def _stack(tmp_path: Path, name: str, body: str) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / f"Pulumi.{name}.yaml").write_text(textwrap.dedent(body))
    return tmp_path


def test_a_good_stack_prints_what_pulumi_up_would_create_and_its_cost(tmp_path: Path) -> None:
    root = _stack(
        tmp_path,
        "prod",
        f"""\
        config:
          aws:region: us-east-1
          aws:defaultTags:
            tags:
              team: data
          prefect-fargate:prefectApiKey:
            secure: {CIPHERTEXT}
          prefect-fargate:prefectAccountId: {ACCOUNT_ID}
          prefect-fargate:prefectWorkspaceId: {WORKSPACE_ID}
          prefect-fargate:cpu: "1024"
          prefect-fargate:memory: "2048"
          prefect-fargate:subnetIds: []
          prefect-fargate:alertEmail: oncall@example.com
        """,
    )
    code, text = check_config.check("prod", root)
    assert code == 0, text
    assert "Stack prod: the config is valid." in text
    assert "    1  aws:ecs/taskDefinition:TaskDefinition" in text
    assert "    5  aws:cloudwatch/metricAlarm:MetricAlarm" in text
    assert "Worker: 1 task(s) of 1024 cpu / 2048 MiB, X86_64, on FARGATE; " in text
    assert f"flow runs at once per worker (--limit): {run_limit(2048)}" in text
    assert f"Work pool: fargate-pool (type process) at https://api.prefect.cloud/api/accounts/{ACCOUNT_ID}/" in text
    worker = fargate_hour(1024, 2048, "X86_64") * 730  # 1 vCPU + 2 GB all month: $36.04
    total = worker + 3.65 + 0.40 + 0.50 + 5 * 0.10 + 1.00  # IPv4, secret, ECR, 5 alarms, the alert topic's key
    assert f"${total:7.2f}  total" in text
    assert CIPHERTEXT not in text


def test_a_bad_stack_prints_every_problem_with_its_fix_and_fails(tmp_path: Path) -> None:
    root = _stack(
        tmp_path,
        "broken",
        f"""\
        config:
          prefect-fargate:prefectApiKey: pnu_PastedInPlaintext0123456789
          prefect-fargate:prefectAccountId: {ACCOUNT_ID}
          prefect-fargate:prefectWorkspaceId: {WORKSPACE_ID}
          prefect-fargate:cpu: "300"
          prefect-fargate:workPoolType: ecss
        """,
    )
    code, text = check_config.check("broken", root)
    assert code == 1
    lines = text.splitlines()
    assert lines[0] == "error: Invalid stack configuration:"
    problems = [line for line in lines if line.startswith("  - ")]
    assert [p.split(":")[1] for p in problems] == ["prefectApiKey", "cpu", "workPoolType"], text
    assert all(". Fix: pulumi config set" in p for p in problems), text
    assert "pnu_PastedInPlaintext" not in text  # the key's value is never echoed


def test_a_secure_value_counts_as_set_and_secret(tmp_path: Path) -> None:
    """Without its `secure:` key the Cloud stack lacks a key; with it, it passes though nothing was decrypted."""
    body = f"config:\n  prefect-fargate:prefectAccountId: {ACCOUNT_ID}\n"
    body += f"  prefect-fargate:prefectWorkspaceId: {WORKSPACE_ID}\n"
    code, text = check_config.check("nokey", _stack(tmp_path, "nokey", body))
    assert code == 1 and "prefect-fargate:prefectApiKey: is not set" in text
    secure = body + f"  prefect-fargate:prefectApiKey:\n    secure: {CIPHERTEXT}\n"
    code, text = check_config.check("withkey", _stack(tmp_path, "withkey", secure))
    assert code == 0, text


def test_a_missing_stack_file_names_the_ones_there(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config.main(["no-such-stack"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no Pulumi.no-such-stack.yaml in ") and "dev" in line


def test_the_estimate_follows_spot_architecture_and_alarms() -> None:
    from conftest import BASE_CONFIG, run_program

    def total(**config: str) -> float:
        return monthly_estimate(run_program({**BASE_CONFIG, **config})).total

    default = total()
    assert round(default, 2) == 24.07  # $18.02 task + $3.65 IPv4 + $0.40 secret + $0.50 ECR + $0.50 alarms + $1 key
    assert round(default - total(alarms="false"), 2) == 1.50  # 5 alarms and the topic's KMS key
    assert round(default - total(workerCapacity="FARGATE_SPOT"), 2) == round(18.02 * 0.70, 2)
    assert round(default - total(cpuArchitecture="ARM64"), 2) == round(18.02 - 14.42, 2)
