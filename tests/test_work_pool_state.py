"""A state written under one CPython is read, diffed, updated and deleted under another.

A teammate or CI may run `refresh` or `destroy` with another Python minor version than the one
that wrote the state. The providers are stored in the state by reference (prefect_api.py), so the
dynamic provider host of another CPython loads them. Here: the work pool and an automation are
created through the host under the tests' Python, then refreshed, checked for drift, put back and
deleted through the host under another CPython's virtualenv with requirements.txt (the one
`.ci/other-python` makes; `bash .ci/run` makes it before the tests), against a real local server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from conftest import PROJECT, ROOT, STACK
from prefect_servers import Server
from provider_host import provider_host
from pulumi.dynamic.dynamic import serialize_provider

from components.job_templates import process_base_job_template
from components.run_automations import AutomationProvider, automation_props, stuck_runs_automation
from components.work_pool import WorkPoolProvider, description_for

pytestmark = [pytest.mark.slow, pytest.mark.long]

OWNER = f"{PROJECT}/{STACK}"
POOL_URN = f"urn:pulumi:{STACK}::{PROJECT}::pulumi-python:dynamic/prefect:WorkPool::state-pool"
AUTOMATION_URN = f"urn:pulumi:{STACK}::{PROJECT}::pulumi-python:dynamic/prefect:Automation::state-automation"


@pytest.fixture(scope="module")
def other_python() -> str:
    """A python of another minor version with the program's requirements, or a skip saying why."""
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = subprocess.run(
        ["bash", str(ROOT / ".ci" / "other-python"), own], capture_output=True, text=True, timeout=600, check=True
    ).stdout.strip()
    if not found:
        pytest.skip(f"no CPython 3.10+ other than {own} here (python3.1x on PATH or ~/.pyenv/versions/3.1x.*)")
    version = subprocess.run([found, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True)
    assert not version.stdout.startswith(own), version.stdout
    print(f"state written under {sys.version.split()[0]}, read under {version.stdout.strip()}")
    return found


def test_state_written_under_one_python_is_refreshed_diffed_and_destroyed_under_another(
    prefect_servers: tuple[Server, Server], other_python: str
) -> None:
    server = prefect_servers[0]
    pool = {
        "api_url": server.url,
        "api_key": "",
        "name": "state-pool",
        "type": "process",
        "base_job_template": json.dumps(process_base_job_template(), sort_keys=True),
        "concurrency_limit": 3,
        "description": description_for(OWNER),
        "owner": OWNER,
        "__provider": serialize_provider(WorkPoolProvider()),
    }
    spec = stuck_runs_automation(OWNER, "state-pool", timedelta(minutes=15))
    automation = {
        **automation_props(spec, server.url, {"api_key": ""}),
        "__provider": serialize_provider(AutomationProvider()),
    }
    with provider_host() as host:  # the tests' own Python: `pulumi up` by the first teammate
        pool_id, pool_state = host.create(POOL_URN, pool)
        automation_id, automation_state = host.create(AUTOMATION_URN, automation)

    with provider_host(python=other_python) as host:  # `refresh`, `up` and `destroy` by another
        assert host.read(pool_id, POOL_URN, pool_state)[0] == pool_id
        assert host.read(automation_id, AUTOMATION_URN, automation_state)[0] == automation_id
        assert host.changes(pool_id, POOL_URN, pool_state, pool) is False
        assert host.changes(automation_id, AUTOMATION_URN, automation_state, automation) is False

        server.api("PATCH", "/work_pools/state-pool", {"concurrency_limit": 30})
        server.api("PATCH", f"/automations/{automation_id}", {"enabled": False})
        assert host.changes(pool_id, POOL_URN, pool_state, pool) is True
        assert host.changes(automation_id, AUTOMATION_URN, automation_state, automation) is True
        host.update(pool_id, POOL_URN, pool_state, pool)
        host.update(automation_id, AUTOMATION_URN, automation_state, automation)
        assert server.api("GET", "/work_pools/state-pool")["concurrency_limit"] == 3
        assert server.api("GET", f"/automations/{automation_id}")["enabled"] is True

        host.delete(pool_id, POOL_URN, pool_state)
        host.delete(automation_id, AUTOMATION_URN, automation_state)
        errors = host.stderr()
    assert "state-pool" not in [p["name"] for p in server.api("POST", "/work_pools/filter", {})]
    assert automation_id not in [a["id"] for a in server.api("POST", "/automations/filter", {})]
    assert "Fatal Python error" not in errors and "Traceback" not in errors, errors[-3000:]
