"""agent_image/task_protection.py against a stub of the ECS agent's task-protection endpoint: the supervisor
protects its task while a flow run is in flight and clears it after; renewed; an agent that refuses or does
not answer is retried and never stops the supervisor."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from devtools.harness import free_port, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent_image"))
from task_protection import CHECK_SECONDS, ENABLED_ENV, PROTECT_MINUTES, RENEW_SECONDS, TaskProtection
from test_worker_supervisor import RUN_IDS, start_supervised


class Agent:
    """The ECS agent's `/task-protection/v1/state`: records each PUT body, answers as configured."""

    def __init__(self) -> None:
        self.puts: list[dict[str, Any]] = []
        self.answer: dict[str, Any] | None = None  # None: the documented success shape
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                assert self.path == "/api/task-id/task-protection/v1/state", self.path
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                agent.puts.append(body)
                task = "arn:aws:ecs:us-east-1:123456789012:task/c/t"
                answer = agent.answer or {
                    "protection": {"ProtectionEnabled": body["ProtectionEnabled"], "TaskArn": task}
                }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_port}/api/task-id"  # as ECS_AGENT_URI looks
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def agent() -> Iterator[Agent]:
    stub = Agent()
    yield stub
    stub.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.slow  # a real supervisor and stand-in worker against wall-clock deadlines: not the fast set
def test_the_supervisor_protects_its_task_while_a_run_is_in_flight_and_clears_it_after(
    agent: Agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor in front of the stand-in worker (tests/test_worker_supervisor.py), ECS_AGENT_URI on the stub."""
    monkeypatch.setenv("ECS_AGENT_URI", agent.uri)
    monkeypatch.setenv(ENABLED_ENV, "true")
    supervised = start_supervised(tmp_path, f"http://127.0.0.1:{free_port()}/api", {RUN_IDS["short"]: "short"})
    try:
        wait_for(lambda: agent.puts, 30, "protection set while the run is in flight")
        assert agent.puts == [{"ProtectionEnabled": True, "ExpiresInMinutes": PROTECT_MINUTES}]
        (tmp_path / "release").touch()  # the short run ends; the worker keeps polling
        wait_for(lambda: len(agent.puts) == 2, 30, "protection cleared once no run is in flight")
        assert agent.puts[-1] == {"ProtectionEnabled": False}
        time.sleep(CHECK_SECONDS + 1)
        assert len(agent.puts) == 2, "an idle worker kept calling the agent"
        assert "protected while flow runs are in flight" in supervised.log()
    finally:
        supervised.stop()


def test_protection_is_renewed_before_it_lapses(agent: Agent) -> None:
    clock = Clock()
    protection = TaskProtection(agent.uri, clock=clock)
    for _ in range(3):
        clock.now += CHECK_SECONDS
        protection.update(lambda: True)
    assert len(agent.puts) == 1  # set once, not before RENEW_SECONDS
    clock.now += RENEW_SECONDS
    protection.update(lambda: True)
    assert agent.puts[-1] == {"ProtectionEnabled": True, "ExpiresInMinutes": PROTECT_MINUTES}
    assert len(agent.puts) == 2
    assert RENEW_SECONDS < PROTECT_MINUTES * 60  # renewed well before it would lapse


def test_a_refusal_or_no_answer_is_retried_and_never_raised(agent: Agent) -> None:
    clock = Clock()
    protection = TaskProtection(agent.uri, clock=clock)
    agent.answer = {"failure": {"Reason": "TASK_NOT_VALID"}}
    clock.now += 5
    protection.update(lambda: True)
    assert not protection.protected
    agent.answer = None
    protection.update(lambda: True)  # within CHECK_SECONDS: not looked at again yet
    assert len(agent.puts) == 1
    clock.now += 5
    protection.update(lambda: True)
    assert protection.protected and len(agent.puts) == 2
    nowhere = TaskProtection(f"http://127.0.0.1:{free_port()}", clock=clock)
    clock.now += 5
    nowhere.update(lambda: True)  # nothing listens: logged, not raised
    assert not nowhere.protected


def test_outside_ecs_or_a_scaled_service_there_is_nothing_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECS_AGENT_URI", raising=False)
    monkeypatch.setenv(ENABLED_ENV, "true")
    assert TaskProtection.from_environ() is None
    monkeypatch.setenv("ECS_AGENT_URI", "http://169.254.170.2/api/abc")
    found = TaskProtection.from_environ()
    assert found is not None and found.url == "http://169.254.170.2/api/abc/task-protection/v1/state"
    monkeypatch.delenv(ENABLED_ENV)  # a fixed-size service: its task role may not protect, deploys are not held
    assert TaskProtection.from_environ() is None


def test_only_a_scaled_services_worker_turns_protection_on() -> None:
    """The task definition sets the variable task_protection.py reads exactly where WorkerScaling grants the
    task role ecs:UpdateTaskProtection."""
    from conftest import BASE_CONFIG, run_program

    def environment(**config: str) -> dict[str, str]:
        run = run_program({**BASE_CONFIG, **config})
        (container,) = run.one("aws:ecs/taskDefinition:TaskDefinition").json_input("containerDefinitions")
        return {e["name"]: e["value"] for e in container["environment"]}

    assert environment(minWorkers="0", maxWorkers="2").get(ENABLED_ENV) == "true"
    assert ENABLED_ENV not in environment()
