"""The work pool provider's logic that needs no server: check, diff's decisions, and pickling.

The provider runs against real servers in test_work_pool.py (slow); these run in every test pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc

from components.job_templates import process_base_job_template
from components.work_pool import DESCRIPTION, WorkPoolProvider

KEY = "pnu_ProviderKeyThatMustNeverLeak7"
NOWHERE = "http://127.0.0.1:9/api"  # nothing listens: a test that reached the server would fail


def props(**overrides: Any) -> dict[str, Any]:
    return {
        "api_url": NOWHERE,
        "api_key": KEY,
        "name": "pool",
        "type": "process",
        "base_job_template": json.dumps(process_base_job_template(), sort_keys=True),
        "concurrency_limit": 3,
        "description": DESCRIPTION,
        **overrides,
    }


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
    [{"concurrency_limit": None}, {"base_job_template": rpc.UNKNOWN}, {"api_key": "pnu_rotated"}],
    ids=["limit", "template-unknown-in-preview", "rotated-key"],
)
def test_declared_changes_update_in_place_without_asking_the_server(overrides: dict[str, Any]) -> None:
    diff = WorkPoolProvider().diff("id", props(), props(**overrides))
    assert diff.changes is True and not diff.replaces


def test_no_declared_change_asks_the_server_and_fails_without_the_key() -> None:
    with pytest.raises(Exception, match="cannot reach the Prefect API") as raised:
        WorkPoolProvider().diff("id", props(), props())
    assert KEY not in str(raised.value)


def test_provider_runs_where_this_project_cannot_be_imported(tmp_path: Path) -> None:
    """Pulumi runs the pickled provider in its own process: it must not need `components`."""
    pickled = tmp_path / "provider.b64"
    pickled.write_text(serialize_provider(WorkPoolProvider()))
    script = (
        "import base64, importlib.util, json\n"
        "import dill\n"
        "assert importlib.util.find_spec('components') is None\n"
        f"provider = dill.loads(base64.b64decode(open({str(pickled)!r}).read()))\n"
        "try:\n"
        f"    provider.delete('id', json.loads({json.dumps(json.dumps(props()))}))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("WorkPoolError Prefect work pool 'pool': deleting it at http://127.0.0.1:9/api")
    assert KEY not in result.stdout


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
    assert opts.additional_secret_outputs == ["api_key"]
    pool = run.one("pulumi-python:dynamic/prefect:WorkPool")
    assert pool.inputs["api_key"][rpc._special_sig_key] == rpc._special_secret_sig


def _http_error(status: int, body: dict[str, Any]) -> Exception:
    import httpx

    request = httpx.Request("POST", f"{NOWHERE}/work_pools/")
    response = httpx.Response(status, json=body, request=request)
    return httpx.HTTPStatusError(f"{status}", request=request, response=response)


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
    reason = WorkPoolProvider._reason(ObjectUnsupported(http_exc=error) if wrap else error)
    assert expected in reason
    assert KEY not in reason
