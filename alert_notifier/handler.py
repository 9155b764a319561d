"""The Lambda entry point (`alert_notifier.handler.handler`): one state change of one of the stack's CloudWatch
alarms, published as one readable message to the stack's alert topic.

Why a function between the alarms and the topic: CloudWatch alarms cannot publish to a topic encrypted with the
AWS-managed `alias/aws/sns` key (its key policy gives only principals of the account, through SNS, the use of it,
and nobody can change it), so a topic they publish to needs a customer-managed key of its own ($1 a month). An IAM
role of the account can publish to it. So the alarms invoke this function (CloudWatch user guide, "Invoke a Lambda
function from an alarm": an asynchronous invocation, which Lambda retries twice) and its role publishes. Should it
still fail, Lambda sends the event itself to the same topic (the function's on-failure destination).

What it publishes (topic.py, which the stack controller's failed-run notices share): an email subscriber gets a
readable text (`message`); every other protocol (https, SQS, Lambda, email-json) gets the JSON CloudWatch itself
publishes to a topic (`cloudwatch_notification`), so that tools which read CloudWatch's alarm notifications (an
https endpoint of an incident tool, say) read these too.

Event: CloudWatch's alarm payload (the same guide's example): `alarmArn`, `region`, `accountId`, and `alarmData`
with `alarmName`, `state` and `previousState` (`value`, `reason`, `timestamp`) and `configuration` (`description`,
`metrics[].metricStat`). Environment: ALERT_TOPIC_ARN, the topic to publish to. Standard library and the runtime's
boto3 only.
"""

from __future__ import annotations

import os
from typing import Any

from .topic import publish_request, subject_line


def message(event: dict[str, Any]) -> tuple[str, str]:
    """(subject, body): the state and the alarm's name, then what the alarm's description says to do, then why
    CloudWatch changed the state and how to see the alarm's history."""
    alarm = event["alarmData"]
    name, state = alarm["alarmName"], alarm["state"]
    was = (alarm.get("previousState") or {}).get("value", "unknown")
    description = (alarm.get("configuration") or {}).get("description") or "(no description)"
    subject = subject_line(f"{state['value']}: {name}")  # the alarm's name and state only
    body = "\n".join(
        [
            f"{state['value']}: {name}",
            f"(was {was}; since {state.get('timestamp', event.get('time', '?'))}, {event['region']}, "
            f"account {event['accountId']})",
            "",
            description,
            "",
            f"Why: {state.get('reason', '(no reason given)')}",
            "",
            f"History: aws cloudwatch describe-alarm-history --alarm-name {name} --region {event['region']} "
            "--max-items 10",
        ]
    )
    return subject, body


def cloudwatch_notification(event: dict[str, Any]) -> dict[str, Any]:
    """The fields of the JSON a CloudWatch alarm publishes to a topic itself (its SNS notification: AlarmName,
    AlarmDescription, AWSAccountId, NewStateValue, NewStateReason, StateChangeTime, Region, AlarmArn, OldStateValue,
    Trigger), from what the Lambda payload carries; Trigger names the metric only (the payload has no threshold)."""
    alarm = event["alarmData"]
    configuration = alarm.get("configuration") or {}
    stats = [m["metricStat"] for m in configuration.get("metrics", []) if "metricStat" in m]
    trigger = (
        {
            "MetricName": stats[0]["metric"]["name"],
            "Namespace": stats[0]["metric"]["namespace"],
            "Statistic": stats[0].get("stat"),
            "Dimensions": [{"name": k, "value": v} for k, v in stats[0]["metric"].get("dimensions", {}).items()],
            "Period": stats[0].get("period"),
        }
        if stats
        else {}
    )
    return {
        "AlarmName": alarm["alarmName"],
        "AlarmDescription": configuration.get("description"),
        "AWSAccountId": event["accountId"],
        "NewStateValue": alarm["state"]["value"],
        "NewStateReason": alarm["state"].get("reason"),
        "StateChangeTime": alarm["state"].get("timestamp", event.get("time")),
        "Region": event["region"],
        "AlarmArn": event["alarmArn"],
        "OldStateValue": (alarm.get("previousState") or {}).get("value"),
        "Trigger": trigger,
    }


def alarm_publish_request(event: dict[str, Any], topic_arn: str) -> dict[str, Any]:
    """SNS Publish's parameters: the readable text for email, CloudWatch's JSON for every other protocol."""
    subject, body = message(event)
    return publish_request(topic_arn, subject, body, cloudwatch_notification(event))


def handler(event: dict[str, Any], _context: Any) -> dict[str, str]:
    """Publish the alarm's change; an error propagates, so Lambda retries, then uses the on-failure destination."""
    import boto3  # the Lambda runtime's; imported here so the module loads without it (tests, the zip check)

    boto3.client("sns").publish(**alarm_publish_request(event, os.environ["ALERT_TOPIC_ARN"]))
    return {"status": "published"}
