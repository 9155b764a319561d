"""RunNotifications: Prefect automations that tell people when this stack's runs fail or its pool has no worker.

Made only when config `prefectNotifyBlock` names a notification block (`<block-type-slug>/<block-name>`,
e.g. `slack-webhook/ops-alerts`) and `alarms` is on. Two automations, kept as declared by the same
provider plumbing as the stack's other automations (run_automations.AutomationProvider), send
through that block:

- **failed runs**: a flow run of this stack's pool enters a FAILED or CRASHED state (a state type:
  custom names such as TimedOut are FAILED too). State-change events carry the state type as
  `prefect.state-type` and name the run's work pool as a related resource
  (prefect/server/models/events.py, `flow_run_state_change_event`). The message is rendered by the
  server's `send-notification` action from Jinja templates whose context holds `flow_run`, `flow`,
  `deployment`, `work_pool` and `event` (prefect/server/events/actions.py,
  `JinjaTemplateAction._relevant_native_objects`); `flow_run.state` is the state of the event that
  fired (`instantiate_object`), not a later one.
- **pool without a worker**, for an always-on stack only (`desiredCount` 1 or more without scaling, or
  `minWorkers` 1 or more): the server's foreman marks a worker OFFLINE once it has missed three
  heartbeats (90 s at the worker's default 30 s) and then the pool NOT_READY, checking every 15 s
  (prefect/server/services/foreman.py, `_mark_work_pools_as_not_ready`), and emits
  `prefect.work-pool.not-ready` naming the pool (prefect/server/models/events.py,
  `work_pool_status_event`). A proactive trigger fires when no `prefect.work-pool.ready` (a worker
  is back) or `prefect.work-pool.paused` (paused on purpose) follows within 5 minutes: about
  6.5 minutes after the last worker stopped, and never for a replacement that starts in time. A stack that
  scales to zero (`minWorkers` 0) has no worker between runs by design: every scale-in would notify. There
  the `late-runs` alarm (components/alerts.py) covers what matters, a run that is due with no worker
  coming; and a stack parked at `desiredCount` 0 has no worker on purpose.

Prefect's `send-notification` action names its block by id (`block_document_id`), which changes
when a block is deleted and made again under the same name. So the provider reads the block by
type slug and name at every `pulumi up` (create, update, and diff, so a re-made block is drift put
back), and refuses a missing block, or one that cannot notify, in one line naming the config key
and the fix. Blocks are read without their secrets (`include_secrets=False`): the webhook URL never
reaches the state or a message.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pulumi

from components.config import PrefectCredential
from components.prefect_api import CREDENTIAL_PROPS, credential_props, stack_owner
from components.run_automations import AutomationError, AutomationProvider, AutomationResource, automation_props

NOTIFY_BLOCK_KEY = "prefect-fargate:prefectNotifyBlock"
POOL_SILENT_FOR = timedelta(minutes=5)
# A valid id in the spec until the provider fills in the block's (the schemas need a UUID to validate it).
UNRESOLVED_BLOCK = "00000000-0000-0000-0000-000000000000"

FAILED_RUN_SUBJECT = "Prefect flow run {{ flow_run.name }} ended {{ flow_run.state.name }}"
FAILED_RUN_BODY = (
    "Flow run {{ flow.name }}/{{ flow_run.name }} of work pool {pool} ended {{ flow_run.state.name }} "
    "at {{ flow_run.state.timestamp }}.\n"
    "State message: {{ flow_run.state.message }}\n"
    "Flow run id: {{ flow_run.id }}\n"
    "First check: the run's logs in the Prefect UI; for Crashed, the worker's logs in CloudWatch "
    "(the stack's logGroupName output)."
)


def _send(block_slug_name: str, subject: str, body: str) -> dict[str, Any]:
    """A `send-notification` action; its block id is filled in by NotificationProvider."""
    return {
        "type": "send-notification",
        "block_document_id": UNRESOLVED_BLOCK,
        "subject": subject,
        "body": body,
        "notify_block": block_slug_name,  # removed before Prefect sees it (NotificationProvider._body)
    }


def failed_runs_notification(owner: str, pool_name: str, notify_block: str) -> dict[str, Any]:
    """Notify through `notify_block` when a run of `pool_name` ends FAILED or CRASHED."""
    return {
        "name": f"{owner}: notify when a flow run of {pool_name} fails or crashes",
        "description": f"Managed by Pulumi stack {owner} (prefect-fargate). Sends a notification through block "
        f"{notify_block} for each flow run of work pool {pool_name} that ends Failed or Crashed.",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Reactive",
            "expect": ["prefect.flow-run.*"],
            "match": {"prefect.resource.id": "prefect.flow-run.*", "prefect.state-type": ["FAILED", "CRASHED"]},
            # Pool names are unique in a workspace, and one replaced (a new type) keeps its name.
            "match_related": {"prefect.resource.role": "work-pool", "prefect.resource.name": pool_name},
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": 0,
        },
        "actions": [_send(notify_block, FAILED_RUN_SUBJECT, FAILED_RUN_BODY.replace("{pool}", pool_name))],
    }


def pool_not_ready_notification(
    owner: str, pool_name: str, notify_block: str, silent_for: timedelta = POOL_SILENT_FOR
) -> dict[str, Any]:
    """Notify through `notify_block` when `pool_name` stays NOT_READY (no worker polling) for `silent_for`
    (5 minutes; a test makes it shorter)."""
    seconds = int(silent_for.total_seconds())
    minutes = f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
    return {
        "name": f"{owner}: notify when work pool {pool_name} has no worker",
        "description": f"Managed by Pulumi stack {owner} (prefect-fargate). Sends a notification through block "
        f"{notify_block} when work pool {pool_name} stays Not Ready (no worker polling) for {minutes}.",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "after": ["prefect.work-pool.not-ready"],
            "expect": ["prefect.work-pool.ready", "prefect.work-pool.paused"],
            "match": {"prefect.resource.id": "prefect.work-pool.*", "prefect.resource.name": pool_name},
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": silent_for.total_seconds(),
        },
        "actions": [
            _send(
                notify_block,
                f"Prefect work pool {pool_name} has had no worker for {minutes}",
                f"Work pool {pool_name} has been Not Ready for {minutes}: no worker has polled it, so its "
                "scheduled runs are not starting (they turn Late). First check: the ECS service's running task "
                "count and the worker's logs in CloudWatch (the stack's serviceName and logGroupName outputs).",
            )
        ],
    }


class NotificationProvider(AutomationProvider):
    """An automation whose `send-notification` actions name their block by `<type-slug>/<name>`; the
    block's id is read from the server at each create, update and diff (see the module docstring)."""

    def _body(self, props: dict[str, Any], client: Any) -> dict[str, Any]:
        body = copy.deepcopy(super()._body(props, client))
        for action in body.get("actions", []):
            if "notify_block" in action:
                block = action.pop("notify_block")
                action["block_document_id"] = UNRESOLVED_BLOCK if client is None else notify_block_id(client, block)
        return body


def notify_block_id(client: Any, block: str) -> str:
    """The id of notification block `<type-slug>/<name>`, or an AutomationError saying how to make it."""
    from prefect.exceptions import ObjectNotFound

    slug, _, name = block.partition("/")
    try:
        document = client.read_block_document_by_name(name=name, block_type_slug=slug, include_secrets=False)
    except ObjectNotFound:
        raise AutomationError(
            f"{NOTIFY_BLOCK_KEY}: no block {block!r} in this workspace. Fix: create a {slug} block named "
            f"{name!r} (Prefect UI: Blocks, then +; or `prefect block create {slug}`), or point the key at one "
            f"that exists: pulumi config set {NOTIFY_BLOCK_KEY} <block-type-slug>/<block-name>"
        ) from None
    capabilities = document.block_schema.capabilities if document.block_schema else []
    if "notify" not in capabilities:
        raise AutomationError(
            f"{NOTIFY_BLOCK_KEY}: block {block!r} cannot send notifications (its type has capabilities "
            f"{sorted(capabilities)}, not 'notify'). Fix: use a notification block such as slack-webhook, "
            f"custom-webhook or ms-teams-webhook: pulumi config set {NOTIFY_BLOCK_KEY} slack-webhook/<block-name>"
        )
    return str(document.id)


@dataclass(frozen=True, kw_only=True)
class RunNotificationsArgs:
    """What the notifications need: the pool they watch, the block they send through, and the Prefect API."""

    pool_name: str
    notify_block: str  # prefectNotifyBlock, `<block-type-slug>/<block-name>`
    always_on_workers: int  # StackConfig.always_on_workers: 0 (scaled to zero, or parked) means no "no worker" notice
    prefect_api_url: str
    prefect_credential: PrefectCredential | None  # None: a server without authentication


class RunNotifications(pulumi.ComponentResource):
    """The failed-run and (for an always-on stack) pool-without-worker notifications of one stack, kept as declared."""

    failed_runs: AutomationResource
    """Notifies when a run of the pool ends Failed or Crashed."""
    pool_not_ready: AutomationResource | None
    """Notifies when the pool has had no worker for 5 minutes; None when no worker is meant to be always on."""

    def __init__(self, name: str, args: RunNotificationsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:prefect:RunNotifications", name, None, opts)
        owner = stack_owner()
        child = pulumi.ResourceOptions(parent=self, additional_secret_outputs=list(CREDENTIAL_PROPS.values()))
        credential = credential_props(args.prefect_credential)

        def notification(suffix: str, spec: dict[str, Any]) -> AutomationResource:
            props = automation_props(spec, args.prefect_api_url, credential)
            return AutomationResource(f"{name}-{suffix}", props, opts=child, provider=NotificationProvider())

        self.failed_runs = notification(
            "failed-runs", failed_runs_notification(owner, args.pool_name, args.notify_block)
        )
        self.pool_not_ready = (
            notification("pool-not-ready", pool_not_ready_notification(owner, args.pool_name, args.notify_block))
            if args.always_on_workers >= 1
            else None
        )
        self.register_outputs({})
