"""PrefectApiProvider: what every Pulumi dynamic provider for a Prefect API object shares.

The work pool (`work_pool.py`) and the automations (`run_automations.py`) are Prefect objects kept
as declared by `pulumi up`. Their providers share, from here: the Prefect client, one-line errors
that never contain the credential, the "is the API reachable" rule of `diff`, the comparison of what
we declare with what the server holds, and how the provider is stored in the Pulumi state.

**Stored by reference.** Pulumi pickles a dynamic provider with dill into the state's
`__provider` (pulumi/dynamic/dynamic.py, `serialize_provider`) and unpickles it in the dynamic
provider host (pulumi/dynamic/__main__.py, `get_provider`: `dill.loads`). A provider class that
lives in an importable module is pickled as a reference to it (module and class name, about 60
bytes), which any Python version loads; one pickled by value carries the bytecode of one CPython
minor version, which another version cannot load (it crashed the host). The host finds
`components` because the engine starts it in the project directory (`newPlugin(ctx, ctx.Pwd, ...)`
in pulumi's sdk/go/common/resource/plugin/provider_plugin.go, `cmd.Dir = pwd` in `ExecPlugin`,
plugin.go) as `python -u -m pulumi.dynamic` (sdk/python/dist/pulumi-resource-pulumi-python), and
`-m` puts the working directory first on `sys.path`. So: no `__main__` tricks, and every class a
provider needs is defined at module level here or in its own module.
"""

from __future__ import annotations

import base64
import json
import os
import pickletools
from typing import TYPE_CHECKING, Any, ClassVar

import pulumi
import pulumi.dynamic

if TYPE_CHECKING:  # the provider host needs none of the program's config
    from components.config import PrefectCredential

TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
KEY_FIX = "Set a valid key: pulumi config set --secret prefect-fargate:prefectApiKey <key>"
AUTH_STRING_FIX = (
    "Set the server's PREFECT_SERVER_API_AUTH_STRING: "
    "pulumi config set --secret prefect-fargate:prefectApiAuthString '<user>:<password>'"
)
# A self-hosted server that answers 401 most likely runs with basic auth (PREFECT_SERVER_API_AUTH_STRING;
# Prefect's server checks no API keys of its own), so the auth string is the key to name first.
_AUTH_STRING_FIRST = (
    "A self-hosted server that refuses {what} most likely runs with basic auth: "
    "pulumi config set --secret prefect-fargate:prefectApiAuthString '<user>:<password>' (its "
    "PREFECT_SERVER_API_AUTH_STRING{then}). If it checks API keys instead: "
    "pulumi config set --secret prefect-fargate:prefectApiKey <key>"
)
SELF_HOSTED_KEY_FIX = _AUTH_STRING_FIRST.format(
    what="a key", then="; then pulumi config rm prefect-fargate:prefectApiKey"
)
SELF_HOSTED_OPEN_FIX = _AUTH_STRING_FIRST.format(what="requests without credentials", then="")
# What a 401 says was refused, by the fix that goes with it (an API key otherwise).
_REFUSED = {AUTH_STRING_FIX: "credential", SELF_HOSTED_OPEN_FIX: "request (sent without credentials)"}
# The prop that carries each credential (config.CREDENTIAL_ENV's variables).
CREDENTIAL_PROPS = {"PREFECT_API_KEY": "api_key", "PREFECT_API_AUTH_STRING": "auth_string"}
PREFECT_CLOUD_DOMAIN = "prefect.cloud"  # as config/prefect.py (not imported: the provider host needs no config)


class PrefectApiError(Exception):
    """A Prefect API failure, described in one line that never contains the credential."""


def owner_mark(organization: str, project: str, stack: str, account: str, region: str) -> str:
    """What marks a Prefect object as one stack's: `<organization>/<project>/<stack>@<account>/<region>`.

    `<project>/<stack>` alone (the mark before this one) is shared by every Pulumi organization's `dev`
    stack in one Prefect workspace. The organization tells Pulumi Cloud teams apart, but every
    self-managed backend reports the same one ("organization"); the AWS account and region tell those
    apart. A stack moved to another backend or organization keeps its objects all the same: the
    providers also accept the mark the stack's state last wrote (its `olds`), and rewrite it."""
    return f"{organization}/{project}/{stack}@{account}/{region}"


def stack_of(mark: str) -> str:
    """The stack name in a mark (either format)."""
    return mark.split("@", 1)[0].rsplit("/", 1)[-1]


def stack_owner() -> str:
    """This stack's mark (`owner_mark`). The account and region are sync invokes: a plain string, so the
    names and descriptions built from it stay plain too."""
    import pulumi_aws as aws

    return owner_mark(
        pulumi.get_organization() or "organization",  # Pulumi's own name for a self-managed backend's
        pulumi.get_project(),
        pulumi.get_stack(),
        aws.get_caller_identity().account_id,
        aws.get_region().region,
    )


def declared_in(wanted: Any, live: Any) -> bool:
    """Whether `live` holds everything `wanted` declares: keys the server adds, and `None`s it
    leaves out, are not drift; a value we declare that differs (or a list of another length) is."""
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return False
        return all(declared_in(value, live.get(key)) if key in live else value is None for key, value in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(wanted) == len(live)
            and all(declared_in(w, v) for w, v in zip(wanted, live, strict=True))
        )
    return bool(wanted == live)


def pickled_strings(serialized: str) -> set[str]:
    """Every string in a serialized provider (base64 pickle, as in the state): module, class and
    attribute names, read without loading it (loading another CPython's bytecode is what crashes)."""
    names = set()
    for opcode, argument, _ in pickletools.genops(base64.b64decode(serialized)):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            names.add(str(argument))
        elif opcode.name == "GLOBAL":  # protocol 0-3: "module name"
            names.update(str(argument).split(" "))
    return names


def carries_code(serialized: str) -> bool:
    """Whether a stored provider was pickled by value (dill rebuilds its functions from bytecode)."""
    return bool(serialized) and bool({"_create_code", "_create_function"} & pickled_strings(serialized))


def parse_json(value: Any) -> Any:
    """A JSON document travels as a string (Pulumi drops `None` values inside objects)."""
    return json.loads(value) if isinstance(value, str) else value


def unreachable(exc: BaseException) -> bool:
    """An outage rather than a refusal: no answer at all, or the server's own failure (HTTP 5xx)."""
    import httpx

    wrapped = getattr(exc, "http_exc", None)  # Prefect wraps some HTTP errors
    exc = wrapped if isinstance(wrapped, httpx.HTTPStatusError) else exc
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


def credential_props(credential: PrefectCredential | None) -> dict[str, pulumi.Input[str]]:
    """The props that carry the Prefect credential (a Pulumi secret): `api_key` or `auth_string`; none
    for a server without authentication. Its resource must list both in `additional_secret_outputs`."""
    if credential is None:
        return {}
    return {CREDENTIAL_PROPS[credential.env_name]: pulumi.Output.secret(credential.value)}


def reason(exc: BaseException, fix: str = KEY_FIX) -> str:
    """The cause of a failed Prefect call in one line, for a person to act on; `fix` says how to set
    the credential the API refused."""
    import httpx

    if isinstance(exc, PrefectApiError):  # already said for a person (a provider's own check)
        return str(exc)
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
        if status == 401:
            what = _REFUSED.get(fix, "API key")
            return f"the Prefect API refused the {what} (HTTP 401). {fix}"
        if status == 403:  # a key without access, or (Prefect Cloud) a plan without this pool type
            detail = body.get("detail") if isinstance(body, dict) else body
            return (
                f"the Prefect API refused the request (HTTP 403: {str(detail)[:300] or 'forbidden'}). "
                f"Check the key's workspace access and the plan's work pool types. {fix}"
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


def _refused(cause: str) -> bool:
    """Whether a failure message is the API refusing the credential (`reason`'s HTTP 401/403 lines)."""
    return "(HTTP 401" in cause or "(HTTP 403" in cause


class PrefectApiProvider(pulumi.dynamic.ResourceProvider):
    """Shared plumbing of a provider whose props hold `api_url`, `name` and the credential: `api_key` or
    `auth_string` (a Pulumi secret; neither for a server without authentication).

    Prefect is imported inside the methods: the program itself needs only the classes' names.
    """

    kind: ClassVar[str]  # "work pool", "automation": how messages name the object
    error: ClassVar[type[PrefectApiError]] = PrefectApiError
    serialize_as_secret_always = False

    def _client(self, props: dict[str, Any]) -> Any:
        import httpx
        from prefect.client.orchestration import SyncPrefectClient

        timeout = httpx.Timeout(TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
        # The client sends `auth_string` as HTTP basic auth, else `api_key` as a bearer token
        # (prefect/client/orchestration/__init__.py, SyncPrefectClient.__init__).
        return SyncPrefectClient(
            props["api_url"],
            api_key=props.get("api_key") or None,
            auth_string=props.get("auth_string") or None,
            httpx_settings={"timeout": timeout},
        )

    @staticmethod
    def _fix(props: dict[str, Any]) -> str:
        """How to set the credential these props carry, for a refusal: a self-hosted server refusing a key
        (or no credential at all) is told about prefectApiAuthString first."""
        from urllib.parse import urlparse

        if props.get("auth_string"):
            return AUTH_STRING_FIX
        host = (urlparse(props.get("api_url") or "").hostname or "").lower()
        if host == PREFECT_CLOUD_DOMAIN or host.endswith(f".{PREFECT_CLOUD_DOMAIN}"):
            return KEY_FIX
        return SELF_HOSTED_KEY_FIX if props.get("api_key") else SELF_HOSTED_OPEN_FIX

    def _message(self, props: dict[str, Any], text: str) -> str:
        """`text` about this object, with the credential masked (an error may quote a URL or a header),
        also in the base64 form basic auth sends it in."""
        message = f"Prefect {self.kind} {props.get('name')!r}: {text}"
        for prop in CREDENTIAL_PROPS.values():
            value = props.get(prop) or ""
            if value:
                encoded = base64.b64encode(value.encode()).decode()
                message = message.replace(value, "***").replace(encoded, "***")
        return message

    def _call(self, props: dict[str, Any], action: str, operation: Any) -> Any:
        """Run `operation(client, props)`; turn any failure into one line without the credential."""
        try:
            with self._client(props) as client:
                return operation(client, props)
        except PrefectApiError as exc:
            cause = str(exc)
        except Exception as exc:  # the Prefect client raises httpx and Prefect errors alike
            cause = reason(exc, self._fix(props))
        raise self.error(self._message(props, f"{action} it at {props.get('api_url')} failed: {cause}")) from None

    def _call_stored(self, props: dict[str, Any], action: str, operation: Any) -> Any:
        """`_call` for `read` (refresh) and `delete` (destroy), which get only the state's props
        (pulumi/dynamic/__main__.py, `Read`/`Delete`: `request.properties`; the stack's config does not
        reach a dynamic provider): a credential rotated and revoked since the last `pulumi up`, or a
        Prefect out of reach, would block them for good. A refused stored credential is retried with
        the one in the environment (the provider host inherits the CLI's), and a failure says how out."""
        try:
            return self._call(props, action, operation)
        except PrefectApiError as exc:
            prop = "auth_string" if props.get("auth_string") else "api_key"
            env = next(name for name, value in CREDENTIAL_PROPS.items() if value == prop)
            current = os.environ.get(env)
            if current and current != props.get(prop) and _refused(str(exc)):
                return self._call({**props, prop: current}, action, operation)
            raise self.error(
                f"{exc}. If the credential was rotated since the last `pulumi up`, run the command again with "
                f"the current one in {env} (or `pulumi up` first, which stores it). If this {self.kind} is "
                "gone for good or Prefect is out of reach, `pulumi state delete <urn>` (the URN of "
                f"{props.get('name')!r} in `pulumi stack --show-urns`) removes it from the state and leaves "
                "it in Prefect; then run the command again"
            ) from None

    def _read_for_diff(self, props: dict[str, Any], read: Any) -> tuple[bool, Any]:
        """(True, what `read` found) or, with the API unreachable, (False, None) after a warning:
        an outage of Prefect must not block a `pulumi up` that only changes AWS resources."""
        from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

        try:
            # One retry, not Prefect's five with back-off: drift is only checked, never needed.
            with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 1}), self._client(props) as client:
                return True, read(client, props)
        except Exception as exc:
            if not unreachable(exc):
                raise self.error(
                    self._message(
                        props, f"reading it at {props.get('api_url')} failed: {reason(exc, self._fix(props))}"
                    )
                ) from None
            # In the provider host `pulumi.log` has no engine and prints "warning: ..." to stderr, which
            # the CLI shows for the dynamic provider (`isDynamicPluginBinary`: its output is not hidden,
            # sdk/go/common/resource/plugin/plugin.go, `newPlugin`).
            pulumi.log.warn(
                self._message(
                    props,
                    f"not checked for drift: {reason(exc)} (at {props.get('api_url')}). "
                    "Assuming it is as last deployed; create and update still need the API.",
                )
            )
            return False, None
