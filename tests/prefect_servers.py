"""Real local Prefect API servers on 127.0.0.1 for the provider tests (work pool, automations, state).

One server without auth (as a self-hosted server often runs) and one with basic auth, so that a
wrong key is refused as Prefect Cloud would refuse it. `conftest.prefect_servers` starts both once
per session, in parallel (a fresh server takes about 13 s to migrate its SQLite database).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.harness import free_port

BIN = Path(sys.executable).parent
AUTH_STRING = "admin:right-password"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes] | None = None
    home: tempfile.TemporaryDirectory[str] | None = None
    log: Path | None = None

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Talk to the server directly, as a user in the UI would."""
        from prefect.client.orchestration import SyncPrefectClient

        with SyncPrefectClient(self.url) as client:
            response = client.request(method, path, json=body)
            return response.json() if response.content else None

    def start(self, auth_string: str | None = None) -> None:
        """`prefect server start` in its own PREFECT_HOME on this server's port (the same one again
        after a `stop`: its database is kept)."""
        if self.home is None:
            self.home = tempfile.TemporaryDirectory(prefix="prefect-home-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=self.home.name, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
        # The tests name a run Late themselves where they mean one. The server's late-runs service would rename a run
        # due now 15 s after its start, so whether it had would depend on the machine's load (a CI run counted one
        # more Late run than it set).
        env["PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED"] = "false"
        if auth_string:
            env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
        self.log = Path(self.home.name) / "server.log"
        port = self.url.split(":")[2].split("/")[0]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout: float = 90) -> None:
        assert self.process is not None and self.log is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Prefect server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:  # noqa: S310 (loopback)
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"Prefect server not healthy in {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM by PID (SIGKILL after 15 s); the database stays until `cleanup`."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cleanup(self) -> None:
        self.stop()
        if self.home is not None:
            self.home.cleanup()


def nowhere() -> Server:
    """A URL on loopback where nothing listens."""
    return Server(f"http://127.0.0.1:{free_port()}/api")


@contextlib.contextmanager
def running_servers() -> Iterator[tuple[Server, Server]]:
    """(open server, basic-auth server), started in parallel, ended and removed afterwards."""
    started = time.monotonic()
    open_server, auth_server = nowhere(), nowhere()
    try:
        open_server.start()
        auth_server.start(auth_string=AUTH_STRING)
        open_server.wait_healthy()
        auth_server.wait_healthy()
        print(f"two Prefect servers healthy in {time.monotonic() - started:.1f} s")
        yield open_server, auth_server
    finally:
        open_server.cleanup()
        auth_server.cleanup()
