"""The alert notifier: the message it makes of an alarm's change, what it publishes (moto SNS, the topic on
`alias/aws/sns` as the stack makes it), its zip, and what its role may do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import ACCOUNT, REGION, Run, inbox, modules_imported_in_lambda, topic_with_inbox

from alert_notifier.handler import alarm_publish_request, cloudwatch_notification, handler, message
from alert_notifier.topic import SUBJECT_MAX
from components.alert_notifier import notifier_archive

ALARM_NAME = "prefect-fargate-nightly-late-runs"
DESCRIPTION = "A flow run of pool fargate-pool has been Late (due, not started) for more than 15 minutes."
REASON = "Threshold Crossed: 1 out of the last 1 datapoints [1020.0 (10/12/26 02:30:00)] was greater than 900.0"


def alarm_event(state: str = "ALARM", previous: str = "OK", name: str = ALARM_NAME) -> dict[str, Any]:
    """CloudWatch's payload for a metric alarm's Lambda action, in the shape of the CloudWatch user guide's example
    ("Invoke a Lambda function from an alarm")."""
    return {
        "source": "aws.cloudwatch",
        "alarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}",
        "accountId": ACCOUNT,
        "time": "2026-12-10T02:31:00.120+0000",
        "region": REGION,
        "alarmData": {
            "alarmName": name,
            "state": {"value": state, "reason": REASON, "timestamp": "2026-12-10T02:31:00.120+0000"},
            "previousState": {"value": previous, "reason": "...", "timestamp": "2026-12-10T01:57:00.000+0000"},
            "configuration": {
                "description": DESCRIPTION,
                "metrics": [
                    {
                        "id": "f1a2b3c4-0000-0000-0000-000000000000",
                        "metricStat": {
                            "metric": {
                                "namespace": "prefect-fargate-nightly",
                                "name": "OldestLateRunAge",
                                "dimensions": {"WorkPool": "fargate-pool"},
                            },
                            "period": 60,
                            "stat": "Maximum",
                        },
                        "returnData": True,
                    }
                ],
            },
        },
    }


def test_the_message_says_what_changed_what_to_do_and_why() -> None:
    subject, body = message(alarm_event())
    assert subject == f"ALARM: {ALARM_NAME}"
    lines = body.splitlines()
    assert lines[0] == f"ALARM: {ALARM_NAME}"
    assert lines[1] == f"(was OK; since 2026-12-10T02:31:00.120+0000, {REGION}, account {ACCOUNT})"
    assert DESCRIPTION in lines  # the alarm's description: what it watches and the first thing to check
    assert f"Why: {REASON}" in lines
    assert lines[-1] == (
        f"History: aws cloudwatch describe-alarm-history --alarm-name {ALARM_NAME} --region {REGION} --max-items 10"
    )


def test_an_ok_says_so_in_its_subject() -> None:
    subject, body = message(alarm_event(state="OK", previous="ALARM"))
    assert subject == f"OK: {ALARM_NAME}" and body.splitlines()[1].startswith("(was ALARM; ")


def test_the_subject_stays_within_snss_limit() -> None:
    """SNS refuses a Subject of 100 characters or more, or with a line break; a long stack name must not cost the
    alert."""
    subject, _ = message(alarm_event(name="prefect-fargate-" + "a-very-long-stack-name-" * 5 + "late-runs"))
    assert len(subject) <= SUBJECT_MAX < 100 and "\n" not in subject


@pytest.fixture
def topic(aws_env: None) -> tuple[str, str]:
    """The alert topic as the stack makes it (alias/aws/sns), with a queue subscribed to read what arrives."""
    return topic_with_inbox()


def test_one_change_is_one_message_on_the_topic(topic: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An email subscriber gets the readable text; the queue, like any other protocol, CloudWatch's own JSON."""
    arn, queue = topic
    monkeypatch.setenv("ALERT_TOPIC_ARN", arn)
    assert handler(alarm_event(), None) == {"status": "published"}
    (delivered,) = inbox(queue)
    assert delivered["Subject"] == message(alarm_event())[0]
    assert json.loads(delivered["Message"]) == cloudwatch_notification(alarm_event())
    request = alarm_publish_request(alarm_event(), arn)
    assert request["MessageStructure"] == "json"
    assert json.loads(request["Message"])["email"] == message(alarm_event())[1]


def test_other_protocols_get_the_fields_cloudwatch_itself_publishes() -> None:
    """The JSON CloudWatch publishes to a topic (the CloudWatch user guide's SNS notification; incident tools read
    AlarmName, NewStateValue, NewStateReason and the rest), filled from the Lambda payload."""
    notification = cloudwatch_notification(alarm_event())
    assert notification == {
        "AlarmName": ALARM_NAME,
        "AlarmDescription": DESCRIPTION,
        "AWSAccountId": ACCOUNT,
        "NewStateValue": "ALARM",
        "NewStateReason": REASON,
        "StateChangeTime": "2026-12-10T02:31:00.120+0000",
        "Region": REGION,
        "AlarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{ALARM_NAME}",
        "OldStateValue": "OK",
        "Trigger": {
            "MetricName": "OldestLateRunAge",
            "Namespace": "prefect-fargate-nightly",
            "Statistic": "Maximum",
            "Dimensions": [{"name": "WorkPool", "value": "fargate-pool"}],
            "Period": 60,
        },
    }


def test_a_failed_publish_raises_so_lambda_retries(topic: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An error is the function's error: Lambda retries it twice, then hands the event to the on-failure
    destination (the same topic). Nothing is swallowed."""
    arn, queue = topic
    monkeypatch.setenv("ALERT_TOPIC_ARN", arn.replace(":alerts", ":no-such-topic"))
    with pytest.raises(boto3.client("sns").exceptions.NotFoundException):
        handler(alarm_event(), None)
    assert inbox(queue) == []


def test_the_zip_holds_only_the_notifier_and_imports_alone(tmp_path: Path) -> None:
    """Extracted as Lambda extracts it, the handler imports in an isolated interpreter (no site-packages): boto3 is
    imported only when it runs, from the Lambda runtime."""
    archive = notifier_archive()
    assert set(archive.assets) == {f"alert_notifier/{p.name}" for p in Path("alert_notifier").glob("*.py")}
    watched = ("boto3", "botocore", "components", "pulumi")
    assert modules_imported_in_lambda(archive, tmp_path, "alert_notifier.handler", watched) == []


# -- what the program registers ------------------------------------------------------------------------------


def test_the_function_is_small_and_named_for_the_stack(default_run: Run) -> None:
    fn = default_run.one("aws:lambda/function:Function", "notifier").plain_inputs
    assert (fn["name"], fn["handler"], fn["runtime"], fn["memorySize"]) == (
        "prefect-fargate-test-alert-notifier", "alert_notifier.handler.handler", "python3.13", 128,
    )  # fmt: skip
    assert fn["environment"]["variables"] == {"ALERT_TOPIC_ARN": default_run.outputs["alertTopicArn"]}
    logs = default_run.one("aws:cloudwatch/logGroup:LogGroup", "notifier").plain_inputs
    assert logs["name"] == f"/aws/lambda/{fn['name']}" and fn["loggingConfig"]["logGroup"] == logs["name"]
    assert (
        logs["retentionInDays"]
        == default_run.one("aws:cloudwatch/logGroup:LogGroup", "worker").plain_inputs["retentionInDays"]
    )


def test_its_role_publishes_to_the_topic_only(default_run: Run) -> None:
    policy = default_run.one("aws:iam/rolePolicy:RolePolicy", "notifier").json_input("policy")
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert set(statements) == {"OwnLogs", "PublishAlerts"}
    assert (statements["PublishAlerts"]["Action"], statements["PublishAlerts"]["Resource"]) == (
        "sns:Publish", default_run.outputs["alertTopicArn"],
    )  # fmt: skip
    trust = default_run.one("aws:iam/role:Role", "notifier").json_input("assumeRolePolicy")
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "lambda.amazonaws.com"}]


def test_the_docs_sample_email_is_what_the_notifier_writes(default_run: Run) -> None:
    """docs/alerts.md's sample: the program's own late-runs description, in the notifier's layout. CloudWatch's
    parts (the reason's wording, the time) are taken from the sample as given."""
    import re

    page = (Path(__file__).resolve().parent.parent / "docs" / "alerts.md").read_text()
    sample = re.search(r"```text\nSubject: (.*?)\n\n(.*?)\n```", page, re.S)
    assert sample, "docs/alerts.md has the sample email"
    subject, body = sample[1], sample[2]
    name = re.search(r"^ALARM: (\S+)$", body, re.M)[1]
    since, region, account = re.search(r"^\(was OK; since (\S+), (\S+), account (\d+)\)$", body, re.M).groups()
    late_runs = next(
        a.plain_inputs for a in default_run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if "-late-runs" in a.name
    )
    event = alarm_event(name=name)
    event.update(region=region, accountId=account)
    event["alarmData"]["state"].update(timestamp=since, reason=re.search(r"^Why: (.*)$", body, re.M)[1])
    event["alarmData"]["configuration"]["description"] = late_runs["alarmDescription"]
    assert (subject, body) == message(event)
