"""WorkPool: the Prefect work pool as a Pulumi resource, through Prefect's own Python client.

Creates a dynamic resource (`pulumi-python:dynamic/prefect:WorkPool`) whose provider creates,
reads, updates and deletes the pool on the stack's Prefect API. Needs the API URL, the API key (a
Pulumi secret: kept encrypted in state, never in a message), the pool's type, base job template,
concurrency limit, and the stack that owns it. The shared plumbing (client, errors, outages,
pickling by reference) is `prefect_api.PrefectApiProvider`.

The template travels as a JSON string: Pulumi drops `None` values inside objects, and Prefect's
templates are full of `"default": null`.

`diff` compares the wanted pool with the pool as it is on the server, not only with the last
state, so a pool changed by hand in the UI is put back by the next `pulumi up`, and a pool deleted
by hand is created again. It compares what we declare: keys the server adds to the template are
not drift. With the Prefect API unreachable it warns and reports no drift, so an outage of Prefect
does not block an AWS-only change. Name, type or API URL changes replace the pool.

**Ownership.** Work pools have no labels in Prefect 3.9 (`WorkPool`: name, description, type,
base job template, is_paused, concurrency limit, storage configuration), so the owner is written
into the description, which the provider keeps as declared: "Managed by Pulumi stack
<organization>/<project>/<stack>@<account>/<region> ..." (`prefect_api.owner_mark`). An existing
pool of the same name is adopted only if it carries this stack's mark, the mark this stack's state
last wrote (an older format, or a stack moved or renamed; it is then rewritten), or nobody's (with a
warning); another stack's pool is refused with the fix, never updated, and never deleted by this
stack's `destroy`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
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
    stack_of,
    stack_owner,
)

# Fields that identify the pool: a change means a new pool (Prefect cannot change a pool's type).
REPLACE_ON = ("name", "type", "api_url")
# Fields the server holds that `pulumi up` keeps as declared.
MANAGED = ("base_job_template", "concurrency_limit", "description")
_OWNER = re.compile(r"^Managed by Pulumi stack (\S+) \(prefect-fargate\)")


def description_for(owner: str) -> str:
    """The pool's description: what a person sees in the UI, and the owner mark the provider reads."""
    return f"Managed by Pulumi stack {owner} (prefect-fargate): changes made here are put back by its next `pulumi up`."


def owner_of(description: str | None) -> str | None:
    """The mark (`prefect_api.owner_mark`, or the older `<project>/<stack>`) a pool's description names as
    its owner, or None (made by hand or a worker)."""
    match = _OWNER.match(description or "")
    return match.group(1) if match else None


class WorkPoolError(PrefectApiError):
    """A work pool operation failed; one line, without the API key."""


class WorkPoolProvider(PrefectApiProvider):
    """CRUD of one Prefect work pool. Props: api_url, api_key or auth_string, name, type, base_job_template,
    concurrency_limit, description, owner."""

    kind = "work pool"
    error = WorkPoolError

    # -- Pulumi operations ------------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        from pulumi.runtime import rpc

        failures = []
        try:
            template = parse_json(news.get("base_job_template"))
        except (TypeError, ValueError):
            template = None
        known = news.get("base_job_template") != rpc.UNKNOWN  # unknown until upstream resources exist (preview)
        if known and not (isinstance(template, dict) and {"job_configuration", "variables"} <= set(template)):
            failures.append(
                pulumi.dynamic.CheckFailure(
                    "base_job_template", "must be an object with `job_configuration` and `variables`"
                )
            )
        limit = news.get("concurrency_limit")
        if limit not in (None, rpc.UNKNOWN) and (
            not isinstance(limit, (int, float)) or limit < 0 or int(limit) != limit
        ):
            failures.append(pulumi.dynamic.CheckFailure("concurrency_limit", "must be a whole number >= 0, or null"))
        return pulumi.dynamic.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        pool = self._call(props, "creating", self._create)
        return pulumi.dynamic.CreateResult(id_=str(pool.id), outs=self._outs(props, pool))

    def read(self, _id: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        pool = self._call_stored(props, "reading", self._read)
        if pool is None:  # deleted outside Pulumi: an empty id tells the engine it is gone
            return pulumi.dynamic.ReadResult(id_="", outs={})
        live = self._live(pool)
        return pulumi.dynamic.ReadResult(id_=str(pool.id), outs={**props, **live, "pool_id": str(pool.id)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = [key for key in REPLACE_ON if olds.get(key) != news.get(key)]
        if replaces:
            return pulumi.dynamic.DiffResult(changes=True, replaces=replaces, delete_before_replace=True)
        changed = [key for key in MANAGED if olds.get(key) != news.get(key)]
        for prop in CREDENTIAL_PROPS.values():
            if olds.get(prop) != news.get(prop):
                changed.append(prop)  # a rotated credential: the state must hold the new one
        if carries_code(olds.get("__provider", "")):
            changed.append("__provider")  # written by an older version: store the provider by reference
        if not changed:
            # Same wish as last time: is the server still as we left it?
            known, pool = self._read_for_diff(news, self._read)
            if known and (pool is None or self._drift(news, pool)):
                changed.append("base_job_template")
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        pool = self._call(news, "updating", lambda client, props: self._update(client, props, olds.get("owner")))
        return pulumi.dynamic.UpdateResult(outs=self._outs(news, pool))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        self._call_stored(props, "deleting", self._delete)

    # -- Prefect calls ----------------------------------------------------------------------------

    def _read(self, client: Any, props: dict[str, Any]) -> Any:
        from prefect.exceptions import ObjectNotFound

        try:
            return client.read_work_pool(props["name"])
        except ObjectNotFound:
            return None

    def _create(self, client: Any, props: dict[str, Any]) -> Any:
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists

        try:
            return client.create_work_pool(
                WorkPoolCreate(
                    name=props["name"],
                    type=props["type"],
                    description=props.get("description"),
                    base_job_template=parse_json(props.get("base_job_template")),
                    concurrency_limit=self._limit(props),
                )
            )
        except ObjectAlreadyExists:
            # Made by a worker, by hand, or by this stack before its state was lost: adopt it if it
            # is the same kind of pool and no other stack owns it, and make it as declared.
            existing = client.read_work_pool(props["name"])
            if existing.type != props["type"]:
                raise WorkPoolError(
                    f"a pool with this name already exists with type {existing.type!r}, not {props['type']!r}; "
                    "delete it in Prefect or choose another workPool name"
                ) from None
            self._claim(existing, props)
            return self._write(client, props)

    def _update(self, client: Any, props: dict[str, Any], previous_owner: str | None) -> Any:
        pool = self._read(client, props)
        if pool is None:  # deleted by hand since the last `pulumi up`
            return self._create(client, props)
        self._claim(pool, props, previous_owner)
        return self._write(client, props)

    def _write(self, client: Any, props: dict[str, Any]) -> Any:
        from prefect.client.schemas.actions import WorkPoolUpdate

        client.update_work_pool(
            props["name"],
            WorkPoolUpdate(
                description=props.get("description"),
                base_job_template=parse_json(props.get("base_job_template")),
                concurrency_limit=self._limit(props),
            ),
        )
        return client.read_work_pool(props["name"])

    def _delete(self, client: Any, props: dict[str, Any]) -> None:
        import contextlib

        from prefect.exceptions import ObjectNotFound

        pool = self._read(client, props)
        if pool is None:  # already gone: nothing to do
            return
        owner = owner_of(pool.description)
        if owner not in (None, props.get("owner")):
            pulumi.log.warn(self._message(props, f"left in place: it belongs to Pulumi stack {owner} now"))
            return
        with contextlib.suppress(ObjectNotFound):
            client.delete_work_pool(props["name"])

    # -- helpers ----------------------------------------------------------------------------------

    def _claim(self, pool: Any, props: dict[str, Any], previous_owner: str | None = None) -> None:
        """Allow writing `pool` if it is this stack's (or was, under the stack's former name) or
        nobody's; refuse another stack's with the command that gives this stack its own pool."""
        owner, mine = owner_of(pool.description), props.get("owner")
        if owner in (mine, previous_owner) and owner is not None:
            return
        if owner is None:
            pulumi.log.warn(
                self._message(
                    props, f"adopting an existing pool that no stack owns (made by a worker or by hand) for {mine}"
                )
            )
            return
        stack = stack_of(str(mine))
        raise WorkPoolError(
            f"this pool belongs to Pulumi stack {owner}, not {mine}, and two stacks cannot share a pool. "
            f"Fix: pulumi config set prefect-fargate:workPool {props['name']}-{stack}"
        )

    @staticmethod
    def _limit(props: dict[str, Any]) -> int | None:
        limit = props.get("concurrency_limit")
        return None if limit is None else int(limit)

    @staticmethod
    def _live(pool: Any) -> dict[str, Any]:
        return {
            "type": pool.type,
            "base_job_template": json.dumps(pool.base_job_template, sort_keys=True),
            "concurrency_limit": pool.concurrency_limit,
            "description": pool.description,
        }

    def _drift(self, props: dict[str, Any], pool: Any) -> bool:
        """Whether the live pool differs from what we declare (server-side additions are not drift)."""
        return not (
            pool.type == props.get("type")
            and pool.concurrency_limit == self._limit(props)
            and pool.description == props.get("description")
            and declared_in(parse_json(props.get("base_job_template")), pool.base_job_template)
        )

    @staticmethod
    def _outs(props: dict[str, Any], pool: Any) -> dict[str, Any]:
        return {**props, "pool_id": str(pool.id)}


class WorkPoolResource(pulumi.dynamic.Resource, module="prefect", name="WorkPool"):
    """A Prefect work pool (dynamic resource; see WorkPoolProvider)."""

    pool_id: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(WorkPoolProvider(), name, {"pool_id": None, **props}, opts)


@dataclass(frozen=True, kw_only=True)
class WorkPoolArgs:
    """The pool as the stack declares it."""

    name: str
    type: str  # the worker type: "process" or "ecs"
    base_job_template: pulumi.Input[dict[str, Any]]  # plain JSON values
    concurrency_limit: int | None
    prefect_api_url: str
    prefect_credential: PrefectCredential | None  # None: a server without authentication


class WorkPool(pulumi.ComponentResource):
    """The Prefect work pool the worker serves, kept as declared."""

    pool_id: pulumi.Output[str]
    """Prefect's id of the pool."""
    name: str
    """Name of the pool."""

    def __init__(self, name: str, args: WorkPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:prefect:WorkPool", name, None, opts)
        owner = stack_owner()
        pool = WorkPoolResource(
            f"{name}-pool",
            {
                "api_url": args.prefect_api_url,
                **credential_props(args.prefect_credential),
                "name": args.name,
                "type": args.type,
                "base_job_template": pulumi.Output.from_input(args.base_job_template).apply(
                    lambda template: json.dumps(template, sort_keys=True)
                ),
                "concurrency_limit": args.concurrency_limit,
                "description": description_for(owner),
                "owner": owner,
            },
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=list(CREDENTIAL_PROPS.values())),
        )
        self.pool_id = pool.pool_id
        self.name = args.name
        self.register_outputs({"pool_id": self.pool_id, "name": self.name})
