"""What every Prefect-object provider shares (components/prefect_api.py), without a Prefect server:
how it is stored in the Pulumi state, how the host loads it, and what counts as drift."""

from __future__ import annotations

import base64
import json
import types
from pathlib import Path
from typing import Any

import pytest
from provider_host import provider_host
from pulumi.dynamic.dynamic import serialize_provider

from components.prefect_api import PrefectApiProvider, carries_code, declared_in, pickled_strings
from components.run_automations import AutomationProvider
from components.work_pool import WorkPoolProvider

KEY = "pnu_ApiKeyThatMustNeverLeak99"
NOWHERE = "http://127.0.0.1:9/api"
PROVIDERS = [WorkPoolProvider, AutomationProvider]


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda cls: cls.__name__)
def test_the_state_holds_a_reference_to_the_provider_not_its_code(provider: type[PrefectApiProvider]) -> None:
    """What lands in the state's `__provider`: the class's module and name, nothing a Python
    version could fail to load (no code objects, no functions)."""
    serialized = serialize_provider(provider())
    assert pickled_strings(serialized) == {provider.__module__, provider.__name__}
    assert provider.__module__.startswith("components.")
    assert len(serialized) < 200, len(serialized)  # bytecode by value was about 22,000
    assert not carries_code(serialized)


def _by_value_provider() -> str:
    """A provider pickled the way the old code stored it (class moved to `__main__`)."""
    old = types.new_class("OldWorkPoolProvider", (WorkPoolProvider,))
    old.__module__ = "__main__"
    old.diff = lambda self, *args: None  # a function of its own, which dill stores as bytecode
    old.diff.__module__ = "__main__"
    return serialize_provider(old())


def test_a_provider_stored_by_value_is_rewritten_by_the_next_up() -> None:
    """A state written by the old code still carries bytecode: `diff` asks for an update, whose new
    state holds the reference, so `destroy` on another Python version works afterwards."""
    old = _by_value_provider()
    assert carries_code(old)
    props = {"api_url": NOWHERE, "api_key": KEY, "name": "pool", "type": "process", "concurrency_limit": 1}
    diff = WorkPoolProvider().diff("id", {**props, "__provider": old}, props)  # no server needed to decide
    assert diff.changes is True and not diff.replaces
    automation = {"api_url": NOWHERE, "api_key": KEY, "name": "a", "automation": "{}"}
    assert AutomationProvider().diff("id", {**automation, "__provider": old}, automation).changes is True


def test_the_host_loads_the_provider_from_the_project_directory() -> None:
    """`python -m pulumi.dynamic` in the project directory, as Pulumi starts it: the stored reference
    resolves and the provider answers (here: a Prefect API that is down, so no drift and a warning)."""
    state = {
        "api_url": NOWHERE,
        "api_key": KEY,
        "name": "pool",
        "type": "process",
        "base_job_template": json.dumps({"job_configuration": {}, "variables": {}}),
        "concurrency_limit": 1,
        "description": "d",
        "owner": "prefect-fargate/test",
        "__provider": serialize_provider(WorkPoolProvider()),
    }
    urn = "urn:pulumi:test::prefect-fargate::pulumi-python:dynamic/prefect:WorkPool::pool"
    with provider_host() as host:
        assert host.changes("id", urn, state, state) is False
        warning = host.stderr().strip().splitlines()[-1]
    assert warning.startswith("warning: Prefect work pool 'pool': not checked for drift: cannot reach")
    assert KEY not in warning


def test_the_host_outside_the_project_directory_cannot_load_it(tmp_path: Path) -> None:
    """Why the project directory matters: elsewhere `components` does not import (Pulumi always
    starts the host in the project directory, so this is not a case a user meets)."""
    import grpc

    state = {"api_url": NOWHERE, "name": "pool", "__provider": serialize_provider(WorkPoolProvider())}
    with provider_host(cwd=tmp_path) as host, pytest.raises(grpc.RpcError) as raised:
        host.delete("id", "urn:pulumi:t::p::x::pool", state)
    assert "No module named 'components'" in raised.value.details()


@pytest.mark.parametrize(
    ("wanted", "live", "expected"),
    [
        ({"a": 1, "b": {"c": [1, {"d": 2}]}}, {"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}, "x": 0}, True),
        ({"a": None}, {}, True),  # a declared null the server leaves out
        ({"a": None}, {"a": None}, True),
        ({"a": 1}, {}, False),
        ({"a": 1}, {"a": 2}, False),
        ({"a": [1, 2]}, {"a": [1]}, False),
        ({"a": [1]}, {"a": [1, 2]}, False),  # a list is declared whole
        ({"a": {"b": 1}}, {"a": "x"}, False),
        ({"a": {1, 2}}, {"a": {2, 1}}, True),  # sets (automation event names) have no order
        ({"a": 1.0}, {"a": 1}, True),
    ],
)
def test_declared_in(wanted: Any, live: Any, expected: bool) -> None:
    assert declared_in(wanted, live) is expected


@pytest.mark.parametrize("prop", ["api_key", "auth_string"])
def test_messages_mask_the_credential_also_as_basic_auth_sends_it(prop: str) -> None:
    """An error may quote a header: the value is masked plain and base64-encoded, and the fix names
    the config key of the credential in use."""
    value = "admin:Pass-That-Must-Never-Leak"
    encoded = base64.b64encode(value.encode()).decode()
    provider = WorkPoolProvider()
    message = provider._message({"name": "pool", prop: value}, f"refused {value} (Authorization: Basic {encoded})")
    assert value not in message and encoded not in message and message.count("***") == 2
    assert ("prefectApiAuthString" if prop == "auth_string" else "prefectApiKey") in provider._fix({prop: value})


def test_every_prefect_object_carries_the_stacks_full_mark() -> None:
    """Organization, project, stack, AWS account and region, as the program finds them: the pool's owner
    and description and the automations' names (the provider adopts an automation by its name)."""
    from conftest import BASE_CONFIG, OWNER, run_program

    from components.work_pool import description_for

    run = run_program({**BASE_CONFIG, "prefectNotifyBlock": "slack-webhook/ops"})
    pool = run.one("pulumi-python:dynamic/prefect:WorkPool").plain_inputs
    assert (pool["owner"], pool["description"]) == (OWNER, description_for(OWNER))
    automations = run.of_type("pulumi-python:dynamic/prefect:Automation")
    assert len(automations) == 4 and all(a.plain_inputs["name"].startswith(f"{OWNER}: ") for a in automations)
    assert {"test-org", "123456789012", "us-east-1"} <= set(OWNER.replace("@", "/").split("/"))
