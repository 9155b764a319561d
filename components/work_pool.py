"""WorkPool: the Prefect work pool as a Pulumi resource, through Prefect's own Python client.

Creates a dynamic resource (`pulumi-python:dynamic/prefect:WorkPool`) whose provider creates,
reads, updates and deletes the pool on the stack's Prefect API. Needs the API URL, the API key (a
Pulumi secret: kept encrypted in state, never in a message), the pool's type, base job template and
concurrency limit.

The template travels as a JSON string: Pulumi drops `None` values inside objects, and Prefect's
templates are full of `"default": null`.

`diff` compares the wanted pool with the pool as it is on the server, not only with the last
state, so a pool changed by hand in the UI is put back by the next `pulumi up`, and a pool deleted
by hand is created again. Name, type or API URL changes replace the pool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

DESCRIPTION = "Managed by Pulumi (prefect-fargate): changes made here are put back by the next `pulumi up`."
# Fields that identify the pool: a change means a new pool (Prefect cannot change a pool's type).
REPLACE_ON = ("name", "type", "api_url")
# Fields the server holds that `pulumi up` keeps as declared.
MANAGED = ("base_job_template", "concurrency_limit", "description")
TIMEOUT_SECONDS = 30.0


class WorkPoolError(Exception):
    """A Prefect API failure, described in one line that never contains the API key."""


class WorkPoolProvider(pulumi.dynamic.ResourceProvider):
    """CRUD of one Prefect work pool. Props: api_url, api_key, name, type, base_job_template,
    concurrency_limit, description.

    Everything the provider runs is a method and Prefect is imported inside them: Pulumi pickles
    this class into the state and runs it in a separate process.
    """

    serialize_as_secret_always = False

    # -- Pulumi operations ------------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        from pulumi.runtime import rpc

        failures = []
        try:
            template = self._template(news)
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

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        pool = self._call(props, "reading", self._read)
        if pool is None:  # deleted outside Pulumi: an empty id tells the engine it is gone
            return pulumi.dynamic.ReadResult(id_="", outs={})
        live = self._live(pool)
        return pulumi.dynamic.ReadResult(id_=str(pool.id), outs={**props, **live, "pool_id": str(pool.id)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = [key for key in REPLACE_ON if olds.get(key) != news.get(key)]
        if replaces:
            return pulumi.dynamic.DiffResult(changes=True, replaces=replaces, delete_before_replace=True)
        changed = [key for key in MANAGED if olds.get(key) != news.get(key)]
        if olds.get("api_key") != news.get("api_key"):
            changed.append("api_key")  # a rotated key: the state must hold the new one
        if not changed:
            # Same wish as last time: is the server still as we left it?
            pool = self._call(news, "reading", self._read)
            if pool is None or self._drift(news, pool):
                changed.append("base_job_template")
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        pool = self._call(news, "updating", self._update)
        return pulumi.dynamic.UpdateResult(outs=self._outs(news, pool))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        self._call(props, "deleting", self._delete)

    # -- Prefect calls ----------------------------------------------------------------------------

    def _client(self, props: dict[str, Any]) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(
            props["api_url"], api_key=props.get("api_key") or None, httpx_settings={"timeout": TIMEOUT_SECONDS}
        )

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
                    base_job_template=self._template(props),
                    concurrency_limit=self._limit(props),
                )
            )
        except ObjectAlreadyExists:
            # Made by a worker started before the pool (`--create-pool-if-not-found`) or by hand:
            # adopt it if it is the same kind of pool, and make it as declared.
            existing = client.read_work_pool(props["name"])
            if existing.type != props["type"]:
                raise WorkPoolError(
                    f"a pool with this name already exists with type {existing.type!r}, not {props['type']!r}; "
                    "delete it in Prefect or choose another workPool name"
                ) from None
            return self._update(client, props)

    def _update(self, client: Any, props: dict[str, Any]) -> Any:
        from prefect.client.schemas.actions import WorkPoolUpdate
        from prefect.exceptions import ObjectNotFound

        try:
            client.update_work_pool(
                props["name"],
                WorkPoolUpdate(
                    description=props.get("description"),
                    base_job_template=self._template(props),
                    concurrency_limit=self._limit(props),
                ),
            )
        except ObjectNotFound:  # deleted by hand since the last `pulumi up`
            return self._create(client, props)
        return client.read_work_pool(props["name"])

    def _delete(self, client: Any, props: dict[str, Any]) -> None:
        import contextlib

        from prefect.exceptions import ObjectNotFound

        with contextlib.suppress(ObjectNotFound):  # already gone: nothing to do
            client.delete_work_pool(props["name"])

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _limit(props: dict[str, Any]) -> int | None:
        limit = props.get("concurrency_limit")
        return None if limit is None else int(limit)

    @staticmethod
    def _template(props: dict[str, Any]) -> Any:
        import json

        template = props.get("base_job_template")
        return json.loads(template) if isinstance(template, str) else template

    def _live(self, pool: Any) -> dict[str, Any]:
        import json

        return {
            "type": pool.type,
            "base_job_template": json.dumps(pool.base_job_template, sort_keys=True),
            "concurrency_limit": pool.concurrency_limit,
            "description": pool.description,
        }

    def _drift(self, props: dict[str, Any], pool: Any) -> bool:
        live = self._live(pool)
        wanted = {key: props.get(key) for key in live}
        wanted["concurrency_limit"] = self._limit(props)
        live["base_job_template"] = self._template(live)
        wanted["base_job_template"] = self._template(props)
        return live != wanted

    def _outs(self, props: dict[str, Any], pool: Any) -> dict[str, Any]:
        return {**props, "pool_id": str(pool.id)}

    def _call(self, props: dict[str, Any], action: str, operation: Any) -> Any:
        """Run one operation; turn any failure into one line without the key."""
        name, url, key = props.get("name"), props.get("api_url"), props.get("api_key") or ""
        try:
            with self._client(props) as client:
                return operation(client, props)
        except WorkPoolError as exc:
            reason = str(exc)
        except Exception as exc:  # the Prefect client raises httpx and Prefect errors alike
            reason = self._reason(exc)
        message = f"Prefect work pool {name!r}: {action} it at {url} failed: {reason}"
        if key:
            message = message.replace(key, "***")
        raise WorkPoolError(message) from None

    @staticmethod
    def _reason(exc: Exception) -> str:
        import httpx

        # Prefect wraps some HTTP errors (ObjectUnsupported, ObjectAlreadyExists, ...): look inside.
        wrapped = getattr(exc, "http_exc", None)
        if isinstance(wrapped, httpx.HTTPStatusError):
            exc = wrapped
        if isinstance(exc, httpx.HTTPStatusError):
            status = exc.response.status_code
            try:
                body = exc.response.json()
            except ValueError:
                body = exc.response.text
            key_fix = "Set a valid key: pulumi config set --secret prefect-fargate:prefectApiKey <key>"
            if status == 401:
                return f"the Prefect API refused the API key (HTTP 401). {key_fix}"
            if status == 403:  # a key without access, or (Prefect Cloud) a plan without this pool type
                detail = body.get("detail") if isinstance(body, dict) else body
                return (
                    f"the Prefect API refused the request (HTTP 403: {str(detail)[:300] or 'forbidden'}). "
                    f"Check the key's workspace access and the plan's work pool types. {key_fix}"
                )
            detail = body
            if isinstance(body, dict):
                problems = body.get("exception_detail") or body.get("detail")
                if isinstance(problems, list):  # FastAPI validation errors: say where and what, not the echo
                    detail = "; ".join(
                        f"{'.'.join(map(str, p.get('loc', [])[1:]))}: {p.get('msg')}" if isinstance(p, dict) else str(p)
                        for p in problems
                    )
                else:
                    detail = problems or body.get("exception_message") or body
            return f"the Prefect API rejected the request (HTTP {status}): {str(detail)[:500]}"
        if isinstance(exc, httpx.TransportError):
            return (
                f"cannot reach the Prefect API ({type(exc).__name__}: {exc or 'no answer'}). "
                "Check prefectApiUrl (or prefectAccountId/prefectWorkspaceId) and the network"
            )
        return f"{type(exc).__name__}: {exc}"


# Pulumi pickles the provider with dill into the state and runs it in a separate process, which may
# not be able to import `components`: naming the classes `__main__` makes dill store them by value
# (the same trick Pulumi used for this, pulumi/pulumi#7755).
def _pickle_by_value(cls: type) -> None:
    cls.__module__ = "__main__"
    for attribute in vars(cls).values():
        function = getattr(attribute, "__func__", attribute)
        if callable(function) and hasattr(function, "__module__"):
            function.__module__ = "__main__"


_pickle_by_value(WorkPoolProvider)
_pickle_by_value(WorkPoolError)


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
    prefect_api_key: pulumi.Input[str] | None  # a Pulumi secret; None: a server without authentication


class WorkPool(pulumi.ComponentResource):
    """The Prefect work pool the worker serves, kept as declared."""

    pool_id: pulumi.Output[str]
    """Prefect's id of the pool."""
    name: str
    """Name of the pool."""

    def __init__(self, name: str, args: WorkPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:prefect:WorkPool", name, None, opts)
        pool = WorkPoolResource(
            f"{name}-pool",
            {
                "api_url": args.prefect_api_url,
                **({"api_key": pulumi.Output.secret(args.prefect_api_key)} if args.prefect_api_key is not None else {}),
                "name": args.name,
                "type": args.type,
                "base_job_template": pulumi.Output.from_input(args.base_job_template).apply(
                    lambda template: json.dumps(template, sort_keys=True)
                ),
                "concurrency_limit": args.concurrency_limit,
                "description": DESCRIPTION,
            },
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["api_key"]),
        )
        self.pool_id = pool.pool_id
        self.name = args.name
        self.register_outputs({"pool_id": self.pool_id, "name": self.name})
