"""One message on the stack's alert topic, as every function of the stack publishes it: the alert notifier (an
alarm's change, handler.py) and the stack controller (a failed flow run, controller/notify.py, whose zip carries
this module too).

An email subscriber gets readable text; every other protocol (https, SQS, Lambda, email-json) gets JSON: SNS's
MessageStructure "json" sends each protocol the value under its own key, and "default" to the others (SNS Publish
API reference). Standard library only.
"""

from __future__ import annotations

import json
from typing import Any

# SNS's Subject: "less than 100 characters", no line breaks (Publish API reference). SSE does not encrypt it (SNS
# developer guide, "Encryption at rest": message metadata such as the subject is not encrypted): callers put in it
# only what names the stack and the kind of alert, never a run's data.
SUBJECT_MAX = 99


def subject_line(text: str) -> str:
    """`text` on one line, within SNS's limit."""
    return " ".join(text.split())[:SUBJECT_MAX]


def publish_request(topic_arn: str, subject: str, email: str, structured: dict[str, Any]) -> dict[str, Any]:
    """SNS Publish's parameters: `email` for email subscribers, `structured` as JSON for every other protocol."""
    messages = {"default": json.dumps(structured), "email": email}
    return {
        "TopicArn": topic_arn,
        "Subject": subject_line(subject),
        "MessageStructure": "json",
        "Message": json.dumps(messages),
    }
