"""Scale-in protection for the worker's own ECS task while flow runs are in flight.

When the service scales in, ECS picks which task to stop. A task whose protection is set is not
stopped "by scale-in events from either service auto scaling or deployments" (ECS developer guide,
"Protect your Amazon ECS tasks from being terminated by scale-in events"); a scale-in then stops an
idle worker instead, or waits. A deployment waits for protected tasks too: a `pulumi up` that rolls the
workers while a run is in flight waits until it ends (or the protection expires), and the old task
then stops idle. A stop ECS sends anyway (Spot interruption, a failed health check, StopTask) is not
held back: the supervisor's hand-back stays the last resort.

The task sets it from inside through the ECS agent (the "task scale-in protection endpoint"):
`PUT $ECS_AGENT_URI/task-protection/v1/state` with `{"ProtectionEnabled": true, "ExpiresInMinutes": N}`
(1 to 2880 minutes; without it 120), and `{"ProtectionEnabled": false}` to clear it. The agent answers
`{"protection": {...}}`, or `{"failure": ...}` / `{"error": ...}`. It calls UpdateTaskProtection with the
task role's credentials, so the role needs `ecs:UpdateTaskProtection` on this task
(components/worker_scaling.py grants it on the cluster's tasks).

Protection is set for PROTECT_MINUTES and renewed every RENEW_SECONDS while runs are in flight, so a
supervisor that dies leaves a protection that lapses by itself. An agent that does not answer is
logged and tried again at the next check; it never stops the supervisor. Outside ECS (no ECS_AGENT_URI)
there is nothing to do, and neither in a service that does not scale: the task definition turns it on
with ENABLED_ENV only where WorkerScaling grants the task role ecs:UpdateTaskProtection
(components/agent_service.py), so a fixed-size service's deploys are not held back by runs in flight
and its worker does not log refusals. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

PROTECT_MINUTES = 30
RENEW_SECONDS = 10 * 60
CHECK_SECONDS = 5  # how often the runs in flight are looked for (a /proc scan)
TIMEOUT_SECONDS = 3
STATE_PATH = "/task-protection/v1/state"
ENABLED_ENV = "PREFECT_FARGATE_TASK_PROTECTION"  # "true" in the worker of a scaled service


# The agent (and the task metadata endpoint) are on the task's own link-local address: never through an
# HTTP(S)_PROXY the image may set.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _log(message: str) -> None:
    print(f"task-protection: {message}", file=sys.stderr, flush=True)


class TaskProtection:
    """Keeps this task protected while `busy()` says runs are in flight; clears it when idle."""

    def __init__(self, agent_uri: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = agent_uri.rstrip("/") + STATE_PATH
        self.clock = clock
        self.protected = False
        self.set_at = float("-inf")
        self.checked_at = float("-inf")

    @classmethod
    def from_environ(cls) -> TaskProtection | None:
        """The ECS agent injects ECS_AGENT_URI into every container of an ECS task; a scaled service's task
        definition sets ENABLED_ENV."""
        agent_uri = os.environ.get("ECS_AGENT_URI")
        return cls(agent_uri) if agent_uri and os.environ.get(ENABLED_ENV) == "true" else None

    def update(self, busy: Callable[[], bool]) -> None:
        """Call often (every supervisor tick): looks at `busy()` at most every CHECK_SECONDS."""
        now = self.clock()
        if now - self.checked_at < CHECK_SECONDS:
            return
        self.checked_at = now
        in_flight = busy()
        if in_flight and (not self.protected or now - self.set_at >= RENEW_SECONDS):
            self._put({"ProtectionEnabled": True, "ExpiresInMinutes": PROTECT_MINUTES}, now)
        elif not in_flight and self.protected:
            self._put({"ProtectionEnabled": False}, now)

    def _put(self, body: dict[str, Any], now: float) -> None:
        request = urllib.request.Request(  # noqa: S310 (ECS_AGENT_URI, an http:// address the agent injects)
            self.url, data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": "application/json"}
        )
        try:
            with DIRECT.open(request, timeout=TIMEOUT_SECONDS) as response:
                answer = json.loads(response.read() or b"{}")
        except (OSError, ValueError) as exc:
            _log(f"could not set {body}: {exc!r}; trying again in {CHECK_SECONDS} s")
            return
        if "protection" not in answer:
            _log(f"the agent refused {body}: {answer}; trying again in {CHECK_SECONDS} s")
            return
        self.protected, self.set_at = bool(body["ProtectionEnabled"]), now
        _log("protected while flow runs are in flight" if self.protected else "cleared: no flow run in flight")
