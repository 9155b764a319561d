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
    assert "    8  aws:cloudwatch/metricAlarm:MetricAlarm" in text
    assert "Worker: 1 task(s) of 1024 cpu / 2048 MiB, X86_64, on FARGATE; " in text
    assert f"flow runs at once per worker (--limit): {run_limit(2048)}" in text
    assert f"Work pool: fargate-pool (type process) at https://api.prefect.cloud/api/accounts/{ACCOUNT_ID}/" in text
    worker = fargate_hour(1024, 2048, "X86_64") * 730  # 1 vCPU + 2 GB all month: $36.04
    controller = 43_200 * (0.20e-6 + 1.0 * 0.125 * 0.0000166667) + 0.01  # runs a month: requests, GB-s, logs
    # IPv4, secret, ECR (3 images of 0.5 GB at $0.10), alarms; no KMS key, no idle backlog metric
    total = worker + 3.65 + 0.40 + 3 * 0.5 * 0.10 + 8 * 0.10 + controller
    assert f"${total:7.2f}  total" in text
    assert "KMS" not in text and "backlog" not in text
    assert "Monthly cost estimate (us-east-1 list prices, the stack's region; 730 hours;" in text
    assert CIPHERTEXT not in text


def _cloud_stack(tmp_path: Path, name: str, extra: str) -> Path:
    body = "config:\n" + f"  prefect-fargate:prefectApiKey:\n    secure: {CIPHERTEXT}\n"
    body += f"  prefect-fargate:prefectAccountId: {ACCOUNT_ID}\n  prefect-fargate:prefectWorkspaceId: {WORKSPACE_ID}\n"
    return _stack(tmp_path, name, body + extra)


@pytest.mark.parametrize(
    ("region", "said"),
    [
        ("eu-central-1", "(us-east-1 list prices, not eu-central-1's (the stack's region): prices differ by region,"),
        (None, "(us-east-1 list prices; the stack's region is not set (aws:region);"),
    ],
    ids=["frankfurt", "unset"],
)
def test_the_cost_line_says_which_regions_prices_it_used(tmp_path: Path, region: str | None, said: str) -> None:
    root = _cloud_stack(tmp_path, "eu", f"  aws:region: {region}\n" if region else "")
    code, text = check_config.check("eu", root)
    assert code == 0, text
    (line,) = [line for line in text.splitlines() if line.startswith("Monthly cost estimate")]
    assert said in line


def test_the_cheapest_worker_arm64_on_spot_is_valid_and_priced(tmp_path: Path) -> None:
    extra = "  prefect-fargate:cpuArchitecture: ARM64\n  prefect-fargate:workerCapacity: FARGATE_SPOT\n"
    code, text = check_config.check("arm", _cloud_stack(tmp_path, "arm", extra))
    assert code == 0, text
    assert "Worker: 1 task(s) of 512 cpu / 1024 MiB, ARM64, on FARGATE_SPOT; " in text
    worker = fargate_hour(512, 1024, "ARM64") * 730 * 0.3  # about 70% less than ARM64 on demand
    assert f"${worker:7.2f}  1 worker task(s), 512 cpu / 1024 MiB, ARM64, Spot" in text


def test_a_mistyped_key_in_a_stack_file_is_refused_with_its_fix(tmp_path: Path) -> None:
    """A bare key in a stack file is the project's (as the CLI reads it): `minWorker` is refused, not ignored."""
    code, text = check_config.check("typo", _cloud_stack(tmp_path, "typo", "  minWorker: 0\n"))
    assert code == 1
    assert (
        "prefect-fargate:minWorker: is not a key this program reads, so its value would be ignored (the nearest key "
        "is minWorkers)" in text
    )
    assert text.endswith(
        "Fix: pulumi config rm prefect-fargate:minWorker && pulumi config set prefect-fargate:minWorkers 0"
    )


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


def test_the_readme_costs_are_the_estimates_of_devtools_costs() -> None:
    """The README's cost figures are what devtools/costs.py computes from the program's resources, so the prices
    live in one place: a price or a resource changed on one side only fails here."""
    from conftest import BASE_CONFIG, run_program

    from devtools import costs

    readme, x = " ".join((ROOT / "README.md").read_text().split()), "\N{MULTIPLICATION SIGN}"

    def total(**config: str) -> float:
        return monthly_estimate(run_program({**BASE_CONFIG, **config})).total

    x86, arm = costs.fargate_hour(512, 1024, "X86_64") * 730, costs.fargate_hour(512, 1024, "ARM64") * 730
    for figure in (
        f"{costs.FARGATE_VCPU_HOUR['X86_64']} per vCPU-hour",
        f"${costs.FARGATE_GB_HOUR['X86_64']} per GB-hour",
        f"IPv4 ${costs.PUBLIC_IPV4_HOUR} per hour",
        f"(0.5 {x} {costs.FARGATE_VCPU_HOUR['X86_64']} + 1 {x} {costs.FARGATE_GB_HOUR['X86_64']}) {x} 730 | ${x86:.2f}",
        f"**about ${total():.2f}**",  # the default stack, alarms included
        f"(about ${total(alarms='false'):.2f})",
        f"the default stack about ${total(workerCapacity='FARGATE_SPOT'):.2f}",
        f"${x86 * (1 - costs.SPOT_SAVING):.2f} (18.02 {x} 0.3)",
        f"${arm:.2f} for the task on demand, and about ${arm * (1 - costs.SPOT_SAVING):.2f} on Spot (14.42 {x} 0.3)",
    ):
        assert figure in readme, figure


def test_a_value_of_the_wrong_type_is_refused_as_the_cli_refuses_it(tmp_path: Path) -> None:
    """Before the program runs, the CLI checks the types Pulumi.yaml declares (docs/configuration.md quotes it)."""
    root = _stack(
        tmp_path,
        "typed",
        """\
        config:
          prefect-fargate:cpu: half
          prefect-fargate:subnetIds: subnet-0123456789abcdef0,subnet-0123456789abcdef1
          prefect-fargate:alarms: "yes"
          prefect-fargate:memory: "2048"
        """,
    )
    code, text = check_config.check("typed", root)
    assert code == 1
    assert text.splitlines() == [
        "error: Stack 'typed' with configuration key 'cpu' must be of type 'integer'",
        "error: Stack 'typed' with configuration key 'subnetIds' must be of type 'array<string>'",
        "error: Stack 'typed' with configuration key 'alarms' must be of type 'boolean'",
    ]


def test_the_nightly_figures_are_the_benchmarks_arithmetic_on_devtools_costs() -> None:
    """docs/scaling.md's nightly stack table is what benchmarks/scale_day_bench.py's `nightly_stack` makes of the
    measured day it states (worker minutes and their month, metric-hours, requests) and devtools/costs.py's prices
    for the program's resources; the README's headline is its totals."""
    import re
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scale_day_bench import nightly_stack

    page = (ROOT / "docs" / "scaling.md").read_text()
    table = page[page.index("| the nightly stack (minWorkers 0, maxWorkers 2), a month |") :].split("\n\n")[0]
    rows = [
        re.match(r"\| (.*?) \| \*?\*?\$([\d.]+)\*?\*? \| \*?\*?\$([\d.]+)\*?\*? \|$", line)
        for line in table.splitlines()[2:]
    ]
    stated = [(m[1], m[2], m[3]) for m in rows]
    minutes, month = re.search(r"worker task and its IPv4 address, (\d+) minutes a day \| \$([\d.]+)", table).groups()
    hours, requests = re.search(r"(\d+) metric-hours and (\d+) PutMetricData requests a day", table).groups()
    day = {"worker_minutes": int(minutes), "month": float(month), "metric_hours": int(hours), "requests": int(requests)}
    computed = nightly_stack(day)
    on, off = sum(r[1] for r in computed), sum(r[2] for r in computed)
    assert stated == [(item, f"{a:.2f}", f"{b:.2f}") for item, a, b in computed] + [
        ("**total**", f"{on:.2f}", f"{off:.2f}")
    ]
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"pays about ${on:.2f} a month" in readme and f"(${off:.2f} with `alarms false`)" in readme
    assert on < 3.00  # issue 24, section 7: under $3 a month, alarms included
