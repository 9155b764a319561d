"""flows/: `prefect deploy` pushes flow code only, through prefect-aws's own push step (against moto)."""

from __future__ import annotations

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
