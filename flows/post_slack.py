"""The sample flow: post a message to a Slack incoming webhook.

The webhook URL is a credential (anyone holding it can post to the channel), so it never lives in
code: pass it as the `webhook_url` parameter, or store it once in a Prefect Secret block named
`slack-webhook-url` (`prefect block create secret` or the UI) and the flow reads it at run time.
"""

from __future__ import annotations

import httpx
from prefect import flow, get_run_logger
from prefect.blocks.system import Secret

WEBHOOK_SECRET_BLOCK = "slack-webhook-url"  # noqa: S105 (a block name, not a secret)


@flow(name="post-slack")
def post_slack(text: str = "Hi from Prefect!", webhook_url: str | None = None) -> None:
    """Post `{"text": text}` to the webhook; a rejected post fails the run instead of passing silently."""
    url = webhook_url or Secret.load(WEBHOOK_SECRET_BLOCK).get()
    response = httpx.post(url, json={"text": text}, timeout=10)
    response.raise_for_status()
    get_run_logger().info("Slack answered %s", response.status_code)  # never log the URL: it is a credential


if __name__ == "__main__":
    post_slack()
