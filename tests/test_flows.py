"""flows/: `prefect deploy` pushes flow code only, through prefect-aws's own push step (against moto)."""

from __future__ import annotations

import re
import shlex
import shutil
import time
import uuid

import boto3
import pytest
import yaml
from conftest import ROOT

FLOWS = ROOT / "flows"
BUCKET = "flows-bucket"


@pytest.mark.usefixtures("aws_env")
def test_deploy_pushes_only_the_flow_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """The push step of flows/prefect.yaml, run as `prefect deploy` runs it (from flows/, with .prefectignore)."""
    from prefect_aws.deployments.steps import push_to_s3

    (step,) = yaml.safe_load((FLOWS / "prefect.yaml").read_text())["push"]
    folder = step["prefect_aws.deployments.steps.push_to_s3"]["folder"]
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.chdir(FLOWS)
    push_to_s3(bucket=BUCKET, folder=folder)
    pushed = {item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    flow_code = {
        f"{folder}/{path.relative_to(FLOWS)}" for path in FLOWS.rglob("*.py") if "__pycache__" not in path.parts
    }
    assert flow_code and pushed == flow_code


def test_the_sample_schedule_is_one_prefect_deploy_accepts() -> None:
    """Each `schedules:` entry read by the function `prefect deploy` uses (prefect/cli/deploy/_schedules.py);
    the demo (tests/test_demo.py) shows the server storing it."""
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from prefect.client.schemas.schedules import CronSchedule

    (deployment,) = yaml.safe_load((FLOWS / "prefect.yaml").read_text())["deployments"]
    (config,) = deployment["schedules"]
    schedule = _schedule_config_to_deployment_schedule(config)["schedule"]
    assert isinstance(schedule, CronSchedule)
    assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "America/New_York")


def _docs_block(marker: str) -> str:
    """The code block under `<!-- marker -->` in docs/flows.md."""
    found = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)\n```", (ROOT / "docs" / "flows.md").read_text(), re.S)
    assert found, f"docs/flows.md has no block marked {marker}"
    return found[1]


def _docs_commands(block: str) -> list[list[str]]:
    """Each `prefect ...` command of a bash block as argv: continued lines joined, comments dropped, and the
    `VAR=$(pulumi stack output ...)` prefixes left to the harness (which sets FLOW_BUCKET and WORK_POOL)."""
    lines = block.replace("\\\n", " ").splitlines()
    commands = [shlex.split(re.sub(r"^(\w+=\$\([^)]*\)\s+)+", "", line.strip()), comments=True) for line in lines]
    assert all(argv[0] == "prefect" for argv in commands), commands
    return commands


@pytest.mark.long  # its own server, S3 and worker, six CLI calls: 44 s idle, 63 s under load; CI's long set
@pytest.mark.slow
def test_your_own_flow_deploys_runs_logs_and_says_why_it_failed_as_docs_flows_md_says() -> None:
    """docs/flows.md's "Your own flow" against the local harness: its file and `deployments:` entry, added to a copy
    of flows/, deploy with its commands; a run's logs hold what the flow logged; the failed run is listed and its
    inspect names the exception."""
    from devtools.harness import FLOWS_DIR, local_cluster

    code, entry = _docs_block("own-flow-code"), yaml.safe_load(_docs_block("own-flow-deployment"))
    commands = _docs_commands(_docs_block("own-flow-commands"))
    with local_cluster(deploy=False) as cluster:
        project = cluster.workdir / "project"
        shutil.copytree(FLOWS_DIR, project, ignore=shutil.ignore_patterns("__pycache__"))
        (project / entry[0]["entrypoint"].split(":")[0]).write_text(code)
        config = yaml.safe_load((project / "prefect.yaml").read_text())
        config["deployments"] += entry
        (project / "prefect.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        cluster.ensure_work_pool()
        worker = cluster.start_worker()
        said, runs = [], []
        try:
            for argv in commands:
                if "<flow-run-id>" in argv:
                    argv = [str(runs[-1]) if arg == "<flow-run-id>" else arg for arg in argv]
                said.append(cluster.cli(argv[1:], project))
                # The engine logs its last line after the final state is set, and the log worker ships it in
                # batches: read until the run's own "Finished in state" line is in, as a user reading later would.
                deadline = time.monotonic() + 60
                while argv[1:3] == ["flow-run", "logs"] and "Finished in state" not in said[-1]:
                    assert time.monotonic() < deadline, f"the run's logs never ended:\n{said[-1]}"
                    time.sleep(2)
                    said[-1] = cluster.cli(argv[1:], project)
                if argv[1:3] == ["deployment", "run"]:
                    runs.append(uuid.UUID(re.search(r"UUID: ([0-9a-f-]{36})", said[-1])[1]))
                    cluster.wait_final([runs[-1]], 120)
        finally:
            worker.stop()
    deployed, _, logs, _, listed, inspected = said
    assert "nightly-report/nightly-report" in deployed
    assert "nightly report: 3 rows written" in logs
    good, bad = runs
    assert str(bad)[:8] in listed and str(good)[:8] not in listed
    inspected = " ".join(inspected.split())  # the CLI wraps at the terminal's width
    assert "message='Flow run encountered an exception: ValueError: rows must be 0 or more, got -1'" in inspected
    assert "state_type=StateType.FAILED" in inspected
