"""agent_image/task_protection.py against a stub of the ECS agent's task-protection endpoint: protected while
a flow-run process is in flight (found as the supervisor finds them), cleared after, renewed, never fatal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from harness import free_port, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent_image"))
from task_protection import PROTECT_MINUTES, RENEW_SECONDS, TaskProtection
from worker_supervisor import runs_in_flight


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


STAND_IN_WORKER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from pathlib import Path
    release = Path(sys.argv[1])
    env = {**os.environ, "PREFECT__FLOW_RUN_ID": sys.argv[2]}
    code = f"import pathlib, time\\nwhile not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)"
    run = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    Path(sys.argv[3]).write_text("started")
    run.wait()
    time.sleep(600)  # the worker keeps polling after its run ended
    """
)


def test_protected_while_a_run_is_in_flight_and_cleared_after(agent: Agent, tmp_path: Path) -> None:
    release, started = tmp_path / "release", tmp_path / "started"
    worker = subprocess.Popen(
        [sys.executable, "-c", STAND_IN_WORKER, str(release), str(uuid.uuid4()), str(started)], start_new_session=True
    )
    try:
        clock = Clock()
        protection = TaskProtection(agent.uri, clock=clock)

        def tick() -> None:
            clock.now += 5
            protection.update(lambda: bool(runs_in_flight(worker.pid)))

        tick()  # the worker polls, no run yet: nothing to set or clear
        assert agent.puts == []
        wait_for(started.exists, 30, "the stand-in's flow run to start")
        tick()
        assert agent.puts == [{"ProtectionEnabled": True, "ExpiresInMinutes": PROTECT_MINUTES}]
        tick()  # still in flight, not yet due for renewal
        assert len(agent.puts) == 1
        clock.now += RENEW_SECONDS
        tick()  # renewed before it lapses
        assert agent.puts[-1] == {"ProtectionEnabled": True, "ExpiresInMinutes": PROTECT_MINUTES}
        release.write_text("go")
        wait_for(lambda: not runs_in_flight(worker.pid), 30, "the run to end")
        tick()
        assert agent.puts[-1] == {"ProtectionEnabled": False}
        count = len(agent.puts)
        tick()  # idle stays idle: no more calls
        assert len(agent.puts) == count == 3
    finally:
        os.killpg(worker.pid, 9)
        worker.wait()


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


def test_outside_ecs_there_is_nothing_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECS_AGENT_URI", raising=False)
    assert TaskProtection.from_environ() is None
    monkeypatch.setenv("ECS_AGENT_URI", "http://169.254.170.2/api/abc")
    found = TaskProtection.from_environ()
    assert found is not None and found.url == "http://169.254.170.2/api/abc/task-protection/v1/state"
