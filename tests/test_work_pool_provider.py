"""The work pool provider's decisions that need no server: check, diff (against a pool recorded from
a real Prefect 3.9.1 server), outages, and key masking.

The provider runs against real servers in test_work_pool.py (slow); these run in every test pass.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import OWNER as STACK_OWNER
from pulumi.runtime import rpc

from components.job_templates import process_base_job_template
from components.prefect_api import reason
from components.work_pool import WorkPoolError, WorkPoolProvider, description_for

KEY = "pnu_ProviderKeyThatMustNeverLeak7"
NOWHERE = "http://127.0.0.1:9/api"  # nothing listens: a test that reached a server would fail
# `GET /work_pools/fargate-pool` from a real Prefect 3.9.1 server, for the pool the provider made from
# props() (tests/prefect_servers.py; recorded 2026-11-28).
RECORDED = json.loads((Path(__file__).parent / "data" / "work_pool_process_3.9.1.json").read_text())
OWNER = "prefect-fargate/test"  # the recording's mark (the `<project>/<stack>` format of then)


def props(**overrides: Any) -> dict[str, Any]:
    return {
        "api_url": NOWHERE,
        "api_key": KEY,
        "name": "fargate-pool",
        "type": "process",
        "base_job_template": json.dumps(process_base_job_template(), sort_keys=True),
        "concurrency_limit": 4,
        "description": description_for(OWNER),
        "owner": OWNER,
        **overrides,
    }


class RecordedPrefect:
    """Prefect's sync client as the provider's `diff` uses it, answering with a recorded pool, or
    raising what the real client raises."""

    def __init__(self, pool: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.pool, self.error = pool, error

    def __enter__(self) -> RecordedPrefect:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def __getattr__(self, operation: str) -> Any:
        """Any other call (create, update, delete) fails as the client would, with `error`."""
        if self.error is None:
            raise AttributeError(operation)

        def failing(*_: Any, **__: Any) -> Any:
            raise self.error  # type: ignore[misc]

        return failing

    def read_work_pool(self, name: str) -> Any:
        from prefect.client.schemas.objects import WorkPool
        from prefect.exceptions import ObjectNotFound

        if self.error is not None:
            raise self.error
        if self.pool is None or self.pool["name"] != name:
            raise ObjectNotFound(http_exc=Exception("404"))
        return WorkPool.model_validate(self.pool)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make the provider's client a RecordedPrefect for this test."""

    def use(pool: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        monkeypatch.setattr(WorkPoolProvider, "_client", lambda self, _props: RecordedPrefect(pool, error))

    return use


def _http_error(status: int, body: dict[str, Any] | str, url: str = f"{NOWHERE}/work_pools/") -> httpx.HTTPStatusError:
    request = httpx.Request("POST", url)
    response = (
        httpx.Response(status, json=body, request=request)
        if isinstance(body, dict)
        else httpx.Response(status, text=body, request=request)
    )
    return httpx.HTTPStatusError(f"{status}", request=request, response=response)


@pytest.mark.parametrize(
    ("overrides", "failing"),
    [
        ({}, []),
        ({"base_job_template": rpc.UNKNOWN, "concurrency_limit": rpc.UNKNOWN}, []),  # preview
        ({"base_job_template": "not json"}, ["base_job_template"]),
        ({"base_job_template": json.dumps({"variables": {}})}, ["base_job_template"]),
        ({"concurrency_limit": -1}, ["concurrency_limit"]),
        ({"concurrency_limit": 1.5}, ["concurrency_limit"]),
    ],
    ids=["valid", "unknown", "not-json", "no-job-configuration", "negative-limit", "fractional-limit"],
)
def test_check(overrides: dict[str, Any], failing: list[str]) -> None:
    result = WorkPoolProvider().check({}, props(**overrides))
    assert [failure.property for failure in result.failures] == failing


@pytest.mark.parametrize("key", ["name", "type", "api_url"])
def test_identity_changes_replace_the_pool_first(key: str) -> None:
    new = {"name": "other", "type": "ecs", "api_url": "http://127.0.0.1:8/api"}[key]
    diff = WorkPoolProvider().diff("id", props(), props(**{key: new}))
    assert diff.changes is True and diff.replaces == [key] and diff.delete_before_replace is True


@pytest.mark.parametrize(
    "overrides",
    [
        {"concurrency_limit": None},
        {"base_job_template": rpc.UNKNOWN},
        {"api_key": "pnu_rotated"},
        {"owner": "prefect-fargate/renamed", "description": description_for("prefect-fargate/renamed")},
    ],
    ids=["limit", "template-unknown-in-preview", "rotated-key", "renamed-stack"],
)
def test_declared_changes_update_in_place_without_asking_the_server(overrides: dict[str, Any]) -> None:
    diff = WorkPoolProvider().diff("id", props(), props(**overrides))
    assert diff.changes is True and not diff.replaces


# -- drift: the same wish as last time, against the pool as the server holds it -------------------


def test_the_recorded_pool_as_declared_is_no_drift(serve: Callable[..., None]) -> None:
    serve(RECORDED)
    assert WorkPoolProvider().diff("id", props(), props()).changes is False


def _template_default(pool: dict[str, Any]) -> None:
    pool["base_job_template"]["variables"]["properties"]["stream_output"]["default"] = False


def _template_command(pool: dict[str, Any]) -> None:
    pool["base_job_template"]["job_configuration"]["command"] = "python -c 'import os; os.system(\"sh\")'"


def _template_variable_removed(pool: dict[str, Any]) -> None:
    del pool["base_job_template"]["variables"]["properties"]["working_dir"]


def _limit(pool: dict[str, Any]) -> None:
    pool["concurrency_limit"] = 40


def _no_limit(pool: dict[str, Any]) -> None:
    pool["concurrency_limit"] = None


def _description(pool: dict[str, Any]) -> None:
    pool["description"] = "edited in the UI"


@pytest.mark.parametrize(
    "edit",
    [_template_default, _template_command, _template_variable_removed, _limit, _no_limit, _description],
    ids=lambda edit: edit.__name__.strip("_"),
)
def test_one_managed_field_changed_alone_is_drift_put_back(serve: Callable[..., None], edit: Any) -> None:
    pool = copy.deepcopy(RECORDED)
    edit(pool)
    serve(pool)
    diff = WorkPoolProvider().diff("id", props(), props())
    assert diff.changes is True and not diff.replaces


def test_fields_the_server_adds_or_leaves_out_are_not_drift(serve: Callable[..., None]) -> None:
    pool = copy.deepcopy(RECORDED)
    template = pool["base_job_template"]
    template["x-server-field"] = {"added": True}
    template["variables"]["properties"]["command"]["examples"] = ["python flow.py"]
    template["variables"]["required"] = []
    del template["variables"]["properties"]["name"]["default"]  # we declare `"default": null`
    pool["is_paused"] = True  # left to the user
    serve(pool)
    assert WorkPoolProvider().diff("id", props(), props()).changes is False


def test_a_pool_deleted_by_hand_is_drift(serve: Callable[..., None]) -> None:
    serve(None)
    assert WorkPoolProvider().diff("id", props(), props()).changes is True


# -- outages and refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("timed out"),
        _http_error(503, {"detail": "Service Unavailable"}),
    ],
    ids=["refused", "timeout", "503"],
)
def test_an_unreachable_api_is_no_drift_known_with_a_warning(
    serve: Callable[..., None], warnings_seen: list[str], error: Exception
) -> None:
    serve(error=error)
    assert WorkPoolProvider().diff("id", props(), props()).changes is False
    (warning,) = warnings_seen
    assert warning.startswith("Prefect work pool 'fargate-pool': not checked for drift: ")
    assert NOWHERE in warning and reason(error) in warning
    assert "\n" not in warning


@pytest.mark.parametrize(
    "error",
    [
        _http_error(401, {"detail": "Unauthorized"}),
        _http_error(403, {"detail": "Forbidden"}),
        ValueError("an answer the client could not read"),
    ],
    ids=["401", "403", "not-an-outage"],
)
def test_a_refusal_or_a_fault_still_fails_diff(
    serve: Callable[..., None], warnings_seen: list[str], error: Exception
) -> None:
    serve(error=error)
    with pytest.raises(WorkPoolError, match=f"reading it at {NOWHERE} failed: "):
        WorkPoolProvider().diff("id", props(), props())
    assert warnings_seen == []


def test_create_and_update_need_the_api(serve: Callable[..., None]) -> None:
    serve(error=httpx.ConnectError("[Errno 111] Connection refused"))
    with pytest.raises(WorkPoolError, match=r"creating it at .* failed: cannot reach the Prefect API"):
        WorkPoolProvider().create(props())
    with pytest.raises(WorkPoolError, match=r"updating it at .* failed: cannot reach the Prefect API"):
        WorkPoolProvider().update("id", props(), props(concurrency_limit=5))


def test_the_real_client_failing_to_connect_is_no_drift_known(warnings_seen: list[str]) -> None:
    """Prefect's own client against a closed port (no stand-in): what a stopped server gives."""
    assert WorkPoolProvider().diff("id", props(), props()).changes is False
    (warning,) = warnings_seen
    assert "cannot reach the Prefect API (ConnectError" in warning and KEY not in warning


# -- the key never in a message -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError(f"cannot connect to http://127.0.0.1:9/{KEY}/api"),
        _http_error(500, f"Internal error while handling Authorization: Bearer {KEY}"),
        _http_error(422, {"detail": [{"loc": ["body", "name"], "msg": f"echo {KEY}"}]}),
        _http_error(401, {"detail": "Unauthorized"}, url=f"http://127.0.0.1:9/api?key={KEY}"),
    ],
    ids=["transport", "500-body", "422-detail", "401"],
)
def test_the_key_is_masked_in_errors_and_warnings(
    serve: Callable[..., None], warnings_seen: list[str], error: Exception
) -> None:
    """An error may quote the key (a URL, a server echoing a header): no message shows it."""
    serve(error=error)
    messages = []
    for operation in (
        lambda: WorkPoolProvider().create(props()),
        lambda: WorkPoolProvider().delete("id", props()),
        lambda: WorkPoolProvider().diff("id", props(), props()),  # an outage: a warning, else an error
    ):
        try:
            operation()
        except WorkPoolError as exc:
            messages.append(str(exc))
    messages += warnings_seen
    assert len(messages) == 3
    assert all(KEY not in message for message in messages)
    quoted = KEY in reason(error)  # the cause as the provider reads it would have shown the key
    assert all(("***" in message) == quoted for message in messages)


def test_key_is_a_secret_input_and_a_secret_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mocks cannot apply `additional_secret_outputs` (the engine does): check the option is asked for."""
    from conftest import run_program

    from components.work_pool import WorkPoolResource

    seen: list[Any] = []
    resource_init = WorkPoolResource.__init__

    def recording(self: Any, name: str, props: dict[str, Any], opts: Any = None) -> None:
        seen.append(opts)
        resource_init(self, name, props, opts)

    monkeypatch.setattr(WorkPoolResource, "__init__", recording)
    run = run_program()
    (opts,) = seen
    assert opts.additional_secret_outputs == ["api_key", "auth_string"]
    pool = run.one("pulumi-python:dynamic/prefect:WorkPool")
    assert pool.inputs["api_key"][rpc._special_sig_key] == rpc._special_secret_sig
    assert pool.plain_inputs["owner"] == STACK_OWNER
    assert pool.plain_inputs["description"] == description_for(STACK_OWNER)


@pytest.mark.parametrize(
    ("status", "body", "wrap", "expected"),
    [
        (401, {"detail": "Unauthorized"}, False, "refused the API key (HTTP 401)"),
        (403, {"detail": "Your plan does not support ecs work pools."}, True,
         "HTTP 403: Your plan does not support ecs work pools."),
        (422, {"exception_detail": [{"loc": ["body", "base_job_template"], "msg": "bad placeholder"}]}, False,
         "HTTP 422): base_job_template: bad placeholder"),
    ],
    ids=["401", "403-plan-wrapped", "422-validation"],
)  # fmt: skip
def test_http_errors_read_as_their_cause(status: int, body: dict[str, Any], wrap: bool, expected: str) -> None:
    from prefect.exceptions import ObjectUnsupported

    error = _http_error(status, body)
    cause = reason(ObjectUnsupported(http_exc=error) if wrap else error)
    assert expected in cause
    assert KEY not in cause


CLOUD = "https://api.prefect.cloud/api/accounts/0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/workspaces/5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
SET_AUTH_STRING = "pulumi config set --secret prefect-fargate:prefectApiAuthString '<user>:<password>'"
SET_KEY = "pulumi config set --secret prefect-fargate:prefectApiKey <key>"


@pytest.mark.parametrize(
    ("overrides", "refused", "first_fix"),
    [
        ({"api_url": CLOUD}, "refused the API key (HTTP 401)", SET_KEY),
        ({}, "refused the API key (HTTP 401)", SET_AUTH_STRING),
        ({"api_key": None}, "refused the request (sent without credentials) (HTTP 401)", SET_AUTH_STRING),
        ({"api_key": None, "auth_string": "admin:wrong"}, "refused the credential (HTTP 401)", SET_AUTH_STRING),
    ],
    ids=["cloud-key", "self-hosted-key", "self-hosted-nothing", "self-hosted-auth-string"],
)
def test_a_401_names_the_likely_key(
    serve: Callable[..., None], overrides: dict[str, Any], refused: str, first_fix: str
) -> None:
    """Prefect Cloud checks API keys; a self-hosted server that answers 401 most likely runs with basic auth,
    so the fix names prefectApiAuthString first."""
    serve(error=_http_error(401, {"detail": "Unauthorized"}))
    with pytest.raises(WorkPoolError) as raised:
        WorkPoolProvider().create(props(**overrides))
    message = str(raised.value)
    assert refused in message
    fixes = [fix for fix in (SET_AUTH_STRING, SET_KEY) if fix in message]
    assert fixes[0] == first_fix and min(message.index(f) for f in fixes) == message.index(first_fix), message
    assert ("prefectApiAuthString" in message) == (overrides.get("api_url") != CLOUD)
