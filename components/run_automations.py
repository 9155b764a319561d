"""RunAutomations: the Prefect automations that keep this stack's flow runs from staying stuck.

Creates two dynamic resources (`pulumi-python:dynamic/prefect:Automation`), each a Prefect
automation made, kept as declared (drift put back) and deleted by `pulumi up`/`destroy` through
the same provider plumbing as the work pool (`prefect_api.PrefectApiProvider`):

- **zombie runs**: a flow run whose heartbeats stop for 90 s (three missed beats: flow runs beat
  every `FLOW_HEARTBEAT_SECONDS`) is marked CRASHED. Its worker task was stopped, replaced or
  killed (SIGKILL, out of memory) mid-run. Heartbeat events name the flow run, its flow,
  deployment and tags, never its work pool (prefect/flow_engine.py,
  `_build_heartbeat_event_template`), so this one watches every flow run of the workspace.
- **stuck runs**: a run of this stack's pool that stays PENDING (submitted, never started: an ECS
  task that could not start, a run a worker claimed just before it was stopped) longer than
  `stuckRunMinutes` is marked CRASHED with a message saying why. State-change events name the run's
  work pool (prefect/server/models/events.py, `_flow_run_related_resources_from_orm`), so this one
  watches this pool only. Late runs are left alone on purpose: a run queued behind the worker's
  `--limit` or the pool's concurrency limit turns Late too, and crashing it would lose a run that is
  only waiting its turn (a burst of 100 due runs takes about 20 minutes to drain on the default
  worker); a pool with no worker at all is the alerts' job (components/alerts.py).

Both are proactive triggers: the server opens a window at an `after` event and fires when no
`expect` event follows within `within` (prefect/server/events/triggers.py, `evaluate`; an event
that is both restarts the window). Proactive triggers are evaluated every 5 s by the server's
triggers service (`PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY`), on by default.

Automation names need not be unique in Prefect, so each carries `<project>/<stack>`: two stacks in
one workspace have their own, and a stack whose state was lost adopts its own by name instead of
making a second. The id Prefect gives is kept in the state (`automation_id`), because one deleted
by hand is made again with a new id and Pulumi cannot change a resource's own id on update.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pulumi
import pulumi.dynamic

from components.config import PrefectCredential
from components.prefect_api import (
    CREDENTIAL_PROPS,
    PrefectApiError,
    PrefectApiProvider,
    carries_code,
    credential_props,
    declared_in,
    parse_json,
    stack_owner,
)

MISSED_HEARTBEATS = 3


def zombie_runs_automation(owner: str) -> dict[str, Any]:
    """A run whose heartbeats stop is CRASHED after MISSED_HEARTBEATS beats (90 s)."""
    # Imported here: the provider host loads this module to find AutomationProvider, and need not
    # import pulumi_aws (which agent_service does) for it.
    from components.agent_service import FLOW_HEARTBEAT_SECONDS

    silence = MISSED_HEARTBEATS * FLOW_HEARTBEAT_SECONDS
    return {
        "name": f"{owner}: crash flow runs whose heartbeats stop",
        "description": f"Managed by Pulumi stack {owner} (prefect-fargate). Flow runs beat every "
        f"{FLOW_HEARTBEAT_SECONDS} s; one silent for {silence} s lost its worker and is marked CRASHED.",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "after": ["prefect.flow-run.heartbeat"],
            "expect": ["prefect.flow-run.*"],  # the next heartbeat, or any state change
            "match": {"prefect.resource.id": "prefect.flow-run.*"},
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": silence,
        },
        "actions": [
            {
                "type": "change-flow-run-state",
                "state": "CRASHED",
                "message": f"No heartbeat for {silence} s: the worker running this flow run stopped or died.",
            }
        ],
    }


def stuck_runs_automation(owner: str, pool_name: str, stuck_after: timedelta) -> dict[str, Any]:
    """A run of this pool that stays PENDING for `stuck_after` is CRASHED, saying why (Late runs may only be
    queued: see the module docstring)."""
    seconds = int(stuck_after.total_seconds())
    minutes = f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
    return {
        "name": f"{owner}: crash flow runs stuck in {pool_name}",
        "description": f"Managed by Pulumi stack {owner} (prefect-fargate). A run of work pool {pool_name} "
        f"that stays Pending for {minutes} is marked CRASHED.",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "after": ["prefect.flow-run.Pending"],
            "expect": ["prefect.flow-run.*"],  # any next state: Running, Cancelled, Pending again...
            "match": {"prefect.resource.id": "prefect.flow-run.*"},
            # Pool names are unique in a workspace, and one replaced (a new type) keeps its name.
            "match_related": {"prefect.resource.role": "work-pool", "prefect.resource.name": pool_name},
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": stuck_after.total_seconds(),
        },
        "actions": [
            {
                "type": "change-flow-run-state",
                "state": "CRASHED",
                "message": f"Pending for {minutes} in work pool {pool_name}: submitted but never started "
                "(for an ecs pool its task could not start: see the ECS task's stopped reason; for a process "
                "pool the worker that took it stopped before starting it).",
            }
        ],
    }


def automation_props(spec: dict[str, Any], api_url: str, credential: dict[str, pulumi.Input[str]]) -> dict[str, Any]:
    """The resource's props for an automation `spec`: the body travels as a JSON string (Pulumi
    drops `None` values inside objects); `credential` is `credential_props`'s."""
    body = {key: value for key, value in spec.items() if key != "name"}
    return {
        "api_url": api_url,
        **credential,
        "name": spec["name"],
        "automation": json.dumps(body, sort_keys=True),
    }


def _not_found(exc: Exception) -> bool:
    import httpx

    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 404


class AutomationError(PrefectApiError):
    """An automation operation failed; one line, without the API key."""


class AutomationProvider(PrefectApiProvider):
    """CRUD of one Prefect automation. Props: api_url, api_key or auth_string, name, automation (a JSON string of
    everything else Prefect's `AutomationCore` holds), automation_id (output)."""

    kind = "automation"
    error = AutomationError

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        from pulumi.runtime import rpc

        failures = []
        if rpc.UNKNOWN not in (news.get("automation"), news.get("name")):
            try:
                self._declared(news)
            except Exception as exc:  # pydantic's ValidationError, or bad JSON
                failures.append(pulumi.dynamic.CheckFailure("automation", " ".join(str(exc).split())[:500]))
        return pulumi.dynamic.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        automation_id = self._call(props, "creating", self._create)
        return pulumi.dynamic.CreateResult(id_=automation_id, outs={**props, "automation_id": automation_id})

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        live = self._call_stored(props, "reading", lambda client, _: self._read(client, self._id(id_, props)))
        if live is None:  # deleted outside Pulumi
            return pulumi.dynamic.ReadResult(id_="", outs={})
        return pulumi.dynamic.ReadResult(id_=id_, outs={**props, "automation_id": str(live.id)})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        if olds.get("api_url") != news.get("api_url"):  # another workspace: make it there, then delete here
            return pulumi.dynamic.DiffResult(changes=True, replaces=["api_url"], delete_before_replace=False)
        changed = [key for key in ("name", "automation", *CREDENTIAL_PROPS.values()) if olds.get(key) != news.get(key)]
        if carries_code(olds.get("__provider", "")):
            changed.append("__provider")
        if not changed:
            known, found = self._read_for_diff(
                news, lambda client, props: (self._read(client, self._id(id_, olds)), self._declared(props, client))
            )
            if known and (found[0] is None or not self._as_declared(found[1], found[0])):
                changed.append("automation")
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        automation_id = self._call(
            news, "updating", lambda client, props: self._update(client, props, self._id(id_, olds))
        )
        return pulumi.dynamic.UpdateResult(outs={**news, "automation_id": automation_id})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        self._call_stored(props, "deleting", lambda client, _: self._delete(client, self._id(id_, props)))

    # -- Prefect calls ----------------------------------------------------------------------------

    @staticmethod
    def _read(client: Any, automation_id: str) -> Any:
        """The automation, or None once it is gone (the client raises for the 404 it means to return)."""
        try:
            return client.read_automation(automation_id)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise

    @staticmethod
    def _delete(client: Any, automation_id: str) -> None:
        try:
            client.delete_automation(automation_id)
        except Exception as exc:
            if not _not_found(exc):  # already gone: nothing to do
                raise

    def _create(self, client: Any, props: dict[str, Any]) -> str:
        declared = self._declared(props, client)  # first: what it needs from the server may be missing
        existing = client.read_automations_by_name(props["name"])  # newest first
        if existing:  # this stack's (its name says so), made before its state was lost: adopt it
            return self._update(client, props, str(existing[0].id))
        return str(client.create_automation(declared))

    def _update(self, client: Any, props: dict[str, Any], automation_id: str) -> str:
        declared = self._declared(props, client)
        if self._read(client, automation_id) is None:  # deleted by hand since the last `pulumi up`
            return str(client.create_automation(declared))
        client.update_automation(automation_id, declared)
        return automation_id

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _id(id_: str, props: dict[str, Any]) -> str:
        return str(props.get("automation_id") or id_)

    def _declared(self, props: dict[str, Any], client: Any = None) -> Any:
        """The automation as Prefect's client schema (the one Prefect Cloud's API takes) reads it."""
        from prefect.events.schemas.automations import AutomationCore

        return AutomationCore.model_validate({**self._body(props, client), "name": props["name"]})

    def _body(self, props: dict[str, Any], _client: Any) -> dict[str, Any]:
        """Everything but the name. A subclass may fill in what only the server knows through the client
        (None in `check`, which runs at preview and asks no server)."""
        return dict(parse_json(props["automation"]))

    @staticmethod
    def _as_declared(declared: Any, live: Any) -> bool:
        """Whether the live automation holds what we declare; fields the server fills in (trigger ids,
        defaults) are not drift. Python-mode dumps keep sets as sets: `after` has no order."""
        return declared_in(declared.model_dump(exclude_unset=True), live.model_dump())


class AutomationResource(pulumi.dynamic.Resource, module="prefect", name="Automation"):
    """A Prefect automation (dynamic resource; see AutomationProvider)."""

    automation_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        props: dict[str, Any],
        opts: pulumi.ResourceOptions | None = None,
        provider: AutomationProvider | None = None,
    ) -> None:
        super().__init__(provider or AutomationProvider(), name, {"automation_id": None, **props}, opts)


@dataclass(frozen=True, kw_only=True)
class RunAutomationsArgs:
    """What the automations need: the pool they watch, and the Prefect API."""

    pool_name: str
    stuck_after: timedelta  # stuckRunMinutes
    prefect_api_url: str
    prefect_credential: PrefectCredential | None  # None: a server without authentication


class RunAutomations(pulumi.ComponentResource):
    """The zombie-run and stuck-run automations of one stack, kept as declared."""

    zombie_runs: AutomationResource
    """Crashes flow runs whose heartbeats stop."""
    stuck_runs: AutomationResource
    """Crashes this pool's runs that stay Pending too long."""

    def __init__(self, name: str, args: RunAutomationsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:prefect:RunAutomations", name, None, opts)
        owner = stack_owner()
        child = pulumi.ResourceOptions(parent=self, additional_secret_outputs=list(CREDENTIAL_PROPS.values()))

        credential = credential_props(args.prefect_credential)
        self.zombie_runs = AutomationResource(
            f"{name}-zombie-runs",
            automation_props(zombie_runs_automation(owner), args.prefect_api_url, credential),
            opts=child,
        )
        self.stuck_runs = AutomationResource(
            f"{name}-stuck-runs",
            automation_props(
                stuck_runs_automation(owner, args.pool_name, args.stuck_after), args.prefect_api_url, credential
            ),
            opts=child,
        )
        self.register_outputs({})
