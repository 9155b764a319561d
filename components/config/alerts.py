"""Who hears about trouble: the alarms switch, alertEmail (subscribed to the alert topic) and
prefectNotifyBlock (Prefect's own run notifications), each only with alarms on."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from components.config.reader import NAMESPACE, Reader, set_command

# `<block-type-slug>/<block-name>`: Prefect allows lowercase letters, digits and '-' in both
# (prefect/types/names.py, BlockDocumentName; block type slugs are slugified names).
_NOTIFY_BLOCK = re.compile(r"^[a-z0-9-]+/[a-z0-9-]+$")


def read_alerts(r: Reader) -> tuple[bool, str | None]:
    """alarms (default on) and alertEmail, a deliverable-looking address (no DNS lookup at deploy time)."""
    alarms = r.boolean("alarms", True)
    raw = r.raw("alertEmail")
    if raw is None:
        return alarms, None
    example = "oncall@example.com"
    try:
        email = validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError as error:
        r.fail(
            "alertEmail",
            f"{raw!r} is not an email address ({error})",
            "one email address",
            set_command("alertEmail", example),
        )
        return alarms, None
    if not alarms:
        r.fail(
            "alertEmail",
            "is set but alarms is false, so nothing would be sent to it",
            "alertEmail only with alarms true",
            f"{set_command('alarms', 'true')}  (or: pulumi config rm {NAMESPACE}:alertEmail)",
        )
    return alarms, email


def read_notify_block(r: Reader, alarms: bool) -> str | None:
    """prefectNotifyBlock: the Prefect notification block the run notifications send through. Whether it
    exists is checked by `pulumi up` against the server (run_notifications.notify_block_id)."""
    key, example = "prefectNotifyBlock", "slack-webhook/ops-alerts"
    raw = r.raw(key)
    if raw is None:
        return None
    if not _NOTIFY_BLOCK.match(raw):
        r.fail(
            key,
            f"{raw!r} is not <block-type-slug>/<block-name>",
            "a notification block's type slug and name, lowercase letters, digits and '-' "
            "(as `prefect block ls` shows them, e.g. slack-webhook/ops-alerts)",
            set_command(key, example),
        )
        return None
    if not alarms:
        r.fail(
            key,
            "is set but alarms is false, so no notification would be sent",
            f"{key} only with alarms true",
            f"{set_command('alarms', 'true')}  (or: pulumi config rm {NAMESPACE}:{key})",
        )
    return raw
