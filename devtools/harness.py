"""A local Prefect hybrid model on 127.0.0.1, for the runtime tests and `benchmarks/`.

It starts real processes (a Prefect API server on SQLite, a moto S3 server holding the flow bucket,
and workers), plus a Slack webhook stand-in thread. Each process gets a free port and a temporary
directory, and is ended by its PID. A worker is started with the command, environment and secrets
of the container definition that the Pulumi program renders under mocks, so what runs here is what
the task definition declares, on a Python environment that holds what the image holds (requirements.txt,
which includes `agent_image/requirements.txt`, and `flows/requirements.txt`, through requirements-dev.txt).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from devtools.mocks import Run

ROOT = Path(__file__).resolve().parent.parent
FLOWS_DIR = ROOT / "flows"
TEST_FLOWS = ROOT / "tests" / "runtime_flows.py"  # the runtime tests' flows, pushed beside flows/
BIN = Path(sys.executable).parent
FLOW_BUCKET = "prefect-flows-test"
AWS_REGION = "us-east-1"
SCHEDULER_LOOP_SECONDS = 10  # with `scheduler`: how often the server's scheduler makes schedules into runs
T = TypeVar("T")


def free_port() -> int:
    """A port nothing listens on right now, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; a generous timeout only keeps a broken run from hanging."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the thing polled is not up yet
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what}: not reached within {timeout:.0f} s (last error: {last_error!r})")


def _session_members(sid: int) -> list[int]:
    """PIDs in session `sid` (what a container's PID namespace would hold for that process tree)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids


def _children_map() -> dict[int, list[int]]:
    """Parent PID -> child PIDs, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    return children


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid`."""
    tree = _children_map()
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def describe_live(pid: int) -> str:
    """`pid state command` of a live process, "" for one that is gone or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return ""
    return "" if state in "ZX" else f"{pid} {state} {command[:200]}"


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (VmRSS), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Process:
    """A process we started, in its own session, with its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    health_port: int | None = None  # a worker's /health port
    _descendants_seen: set[int] = field(default_factory=set)

    @classmethod
    def start(cls, name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path | None = None) -> Process:
        log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(  # new session: like a container's PID 1, and signals reach only this tree
                argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return cls(name=name, popen=popen, log_path=log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tree(self) -> list[int]:
        """This process's descendants now, remembered so that orphans can still be ended later."""
        found = descendants(self.pid)
        self._descendants_seen.update(found)
        return found

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the process group, as tini -g (the image's PID 1) forwards ECS's stop signal."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def kill_leftovers(self) -> None:
        """SIGKILL whatever this process started that still runs: what a container's end does to it."""
        leftovers = set(_session_members(self.pid)) | {p for p in self._descendants_seen if Path(f"/proc/{p}").exists()}
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def ecs_stop(self, stop_timeout: float) -> StopResult:
        """Stop this process as ECS stops a container: SIGTERM to its process group (the image's `tini -g`),
        then, when it exits or at `stop_timeout`, SIGKILL everything it started that still runs."""
        self.tree()
        start = time.monotonic()
        self.signal_group(signal.SIGTERM)
        while self.alive() and time.monotonic() - start < stop_timeout:
            self.tree()  # remember what it starts meanwhile: the container's end kills that too
            time.sleep(0.1)
        exited = not self.alive()
        seconds = time.monotonic() - start
        if not exited:
            self.popen.kill()
            self.popen.wait()
        left = [describe_live(pid) for pid in self._descendants_seen | set(self.tree())]
        self.kill_leftovers()
        return StopResult(seconds=seconds, exited_in_time=exited, processes_left=[p for p in left if p])

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM by PID, SIGKILL after `timeout`; then end anything it left behind."""
        self.tree()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.kill_leftovers()
        return self.popen.returncode


def start_moto(port: int, env: dict[str, str], log_dir: Path, plus: bool = False) -> Process:
    """moto_server on 127.0.0.1:`port` (every AWS service moto emulates), once it answers; `plus`: with the
    read-only answers devtools/moto_plus.py adds for terraform-provider-aws."""
    import httpx

    command = [sys.executable, "-m", "devtools.moto_plus"] if plus else [str(BIN / "moto_server")]
    env = {**env, "PYTHONPATH": str(ROOT)} if plus else env
    # in the log dir: moto writes its request recording (`moto_recording`) where it runs
    moto = Process.start("moto", [*command, "-H", "127.0.0.1", "-p", str(port)], env, log_dir, cwd=log_dir)

    def up() -> bool:
        if not moto.alive():
            raise RuntimeError(f"moto_server exited:\n{moto.log()[-2000:]}")
        return httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=5).status_code == 200

    wait_for(up, 60, "moto_server up")
    return moto


@dataclass(frozen=True)
class StopResult:
    """How an ECS-style stop went: seconds to exit (or to the deadline), and what the deadline had to kill."""

    seconds: float
    exited_in_time: bool
    processes_left: list[str]  # still running when the main process exited: the container's end kills them


def serve_on_loopback(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """`handler` served from a thread on a free loopback port; returns the server and its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()  # quick to shut
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


class _Loopback:
    """A stand-in endpoint served by `serve_on_loopback`."""

    _server: ThreadingHTTPServer

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class WebhookRecorder(_Loopback):
    """A stand-in for a Slack incoming webhook: records each JSON body posted and answers `ok` like Slack."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        received = self.received

        class Handler(_QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server, base = serve_on_loopback(Handler)
        self.url = f"{base}/services/T000/B000/XXXX"


class TaskMetadataStub(_Loopback):
    """ECS's task metadata endpoint, version 4, on loopback: `GET $ECS_CONTAINER_METADATA_URI_V4/task` answers the
    task's metadata with its `TaskARN` ("Amazon ECS task metadata endpoint version 4 for tasks on Fargate"), so the
    worker's supervisor names the worker after a task as it does in ECS."""

    def __init__(self, task_arn: str) -> None:
        answer = json.dumps({"TaskARN": task_arn, "Cluster": task_arn.split("/")[1], "LaunchType": "FARGATE"}).encode()

        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                found = self.path.endswith("/task")
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer if found else b"{}")

        self._server, base = serve_on_loopback(Handler)
        self.uri = f"{base}/v4/{uuid.uuid4().hex}"  # as ECS injects it: a base the paths are appended to


def events_blocked() -> dict[str, str]:
    """Environment that keeps a process's Prefect events (flow-run heartbeats among them) from ever reaching the
    server, as a proxy that drops websockets does, while its HTTP calls go through. Prefect sends events over a
    websocket opened with the `websockets` library (prefect/events/clients.py, `websocket_connect` in
    prefect/_internal/websockets.py), which takes its proxy from the environment and gives a `ws_proxy` the first
    place (websockets/proxy.py, `get_proxy`); here it names a loopback port where nothing listens. Prefect's HTTP
    client (httpx) reads only HTTP(S)_PROXY and ALL_PROXY. NO_PROXY is emptied so that nothing bypasses it."""
    return {"WS_PROXY": f"http://127.0.0.1:{free_port()}", "NO_PROXY": "", "no_proxy": ""}


def image_files() -> dict[str, str]:
    """What the Dockerfile COPYs into the image: its path there -> this checkout's file, so the worker's command
    runs here the files the image holds."""
    files = {}
    for line in (ROOT / "agent_image" / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and len(parts) == 3:
            files[parts[2]] = str(ROOT / parts[1])  # the build context is the project root
    return files


def rendered_worker_container(auth_string: str | None = None) -> dict[str, Any]:
    """The worker's container definition exactly as the Pulumi program registers it: the default config, or
    with `auth_string` a self-hosted server's (prefectApiAuthString, as a secret)."""
    from devtools.mocks import run_program

    if auth_string is None:
        return run_program().container()
    config = {"prefectApiUrl": "http://prefect.internal:4200/api", "prefectApiAuthString": auth_string}
    return run_program(config, secret_keys=["prefectApiAuthString"]).container()


def container_secret_values(auth_string: str | None = None) -> dict[str, str]:
    """What Secrets Manager hands the container for each declared secret: the stack's configured credential."""
    from devtools.mocks import API_KEY

    return {"PREFECT_API_KEY": API_KEY, **({"PREFECT_API_AUTH_STRING": auth_string} if auth_string else {})}


@dataclass
class Cluster:
    """Everything a worker needs around it, on loopback: Prefect API, S3 emulator, webhook, temp dirs."""

    workdir: Path
    server_port: int = field(default_factory=free_port)
    s3_port: int = field(default_factory=free_port)
    auth_string: str | None = None
    container: dict[str, Any] = field(default_factory=rendered_worker_container)
    server: Process | None = None
    s3: Process | None = None
    webhook: WebhookRecorder | None = None
    workers: list[Process] = field(default_factory=list)
    task_metadata: list[TaskMetadataStub] = field(default_factory=list)
    server_settings: dict[str, str] = field(default_factory=dict)  # PREFECT_SERVER_* for `prefect server start`
    extra_flows: tuple[Path, ...] = (TEST_FLOWS,)  # pushed with flows/ by deploy_flows
    ui: bool = False  # the server's web UI (the demo's; tests need only the API)
    scheduler: bool = False  # the server's scheduler, which makes schedules into runs (the demo's), every 10 s

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/api"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def work_pool(self) -> str:
        command = self.container["command"]
        return command[command.index("--pool") + 1]

    @property
    def logs(self) -> Path:
        path = self.workdir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def base_env(self) -> dict[str, str]:
        """This machine's environment without any PREFECT_/AWS_ settings, plus loopback endpoints and dummy AWS keys."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_"))}
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            PREFECT_HOME=str(self.workdir / "client-home"),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            AWS_ENDPOINT_URL=self.s3_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=AWS_REGION,
        )
        return env

    # --- processes -------------------------------------------------------------------------------

    def start_server(self, timeout: float = 120) -> Process:
        """`prefect server start` on SQLite in this cluster's PREFECT_HOME; returns once /api/health answers."""
        env = self.base_env()
        env.update(PREFECT_HOME=str(self.workdir / "server-home"), PREFECT_UI_ENABLED=str(self.ui).lower())
        env.update(PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true")  # a 503 it answers says why in server_errors()
        # SQLite takes one writer at a time, and a write that loses the race is answered 503 at once
        # (SQLITE_BUSY_SNAPSHOT); Prefect Cloud's Postgres has no such limit. CI once saw a load-test
        # run crash because its submission was still refused after the client's five retries. The loops
        # the tests do not use are off so they do not compete with the worker for the lock (late-runs
        # alone re-marks every queued run of the load test every 5 s).
        off = (
            "LATE_RUNS",
            "FOREMAN",
            "PAUSE_EXPIRATIONS",
            "CANCELLATION_CLEANUP",
            *(() if self.scheduler else ("SCHEDULER",)),
        )
        for service in off:
            env[f"PREFECT_SERVER_SERVICES_{service}_ENABLED"] = "false"
        # The scheduler's main loop looks for new schedules every 60 s by default (its recent-deployments loop, every
        # 5 s, sees only deployments updated just now, and adding a schedule does not update its deployment:
        # prefect/server/services/scheduler.py, models/deployments.py `create_deployment_schedules`). 10 s lets the
        # demo add a schedule due within a minute; measured on 2 cores, the server used 2.0-3.0% of a core with it,
        # 1.8-2.1% with the scheduler off.
        env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = str(SCHEDULER_LOOP_SECONDS)
        env.pop("PREFECT_API_URL")
        if self.auth_string:
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth_string
        env.update(self.server_settings)
        argv = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.server_port)]
        self.server = Process.start("server", argv, env, self.logs)
        wait_for(self.server_healthy, timeout, "Prefect server healthy")
        return self.server

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()

    def server_errors(self, most: int = 3) -> str:
        """The last exceptions the server logged (what was behind its 500s and 503s), for failure messages."""
        if self.server is None:
            return ""
        exceptions = self.server.log().split("Encountered ")[1:]  # "Encountered (retryable) exception in request"
        return "\n---\n".join("Encountered " + text[:2500] for text in exceptions[-most:])

    def server_healthy(self) -> bool:
        if self.server is not None and not self.server.alive():
            raise RuntimeError(f"Prefect server exited:\n{self.server.log()[-3000:]}")
        with self.client() as client:
            return client.api_healthcheck() is None

    def start_s3(self) -> None:
        """A moto S3 server with the flow bucket, which boto3 and s3fs reach through AWS_ENDPOINT_URL."""
        import boto3

        self.s3 = start_moto(self.s3_port, self.base_env(), self.logs)
        s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name=AWS_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket=FLOW_BUCKET)

    def worker_env(self, **overrides: str) -> dict[str, str]:
        """The container's environment and secrets, with only the API URL pointed at the local server."""
        env = self.base_env()
        env.update(self.container_env())
        values = container_secret_values(self.auth_string)
        for secret in self.container.get("secrets", []):  # the credential, only as the task definition names it
            env[secret["name"]] = values[secret["name"]]  # KeyError: a secret the harness cannot supply
        env["PREFECT_API_URL"] = self.api_url
        env.update(overrides)
        return env

    def start_worker(
        self,
        *extra_args: str,
        pool: str | None = None,
        limit: int | None = None,
        stop_timeout: int | None = None,
        task_arn: str | None = None,
        **env: str,
    ) -> Process:
        """A worker run with the task definition's command on a free health port (so workers run side by side and
        whatever holds the declared port does not matter); `pool` swaps the pool's name (so one test's runs go to
        one worker), `limit` replaces the declared --limit (benchmarks compare limits), `stop_timeout` the
        deadline the supervisor is told (so a test need not wait Fargate's two minutes), `task_arn` the ECS task it
        runs in (answered by a task metadata endpoint on loopback, as ECS answers it)."""
        health_port = free_port()
        overrides = {"PREFECT_WORKER_WEBSERVER_PORT": str(health_port), **env}
        if task_arn is not None:
            self.task_metadata.append(TaskMetadataStub(task_arn))
            overrides["ECS_CONTAINER_METADATA_URI_V4"] = self.task_metadata[-1].uri
        argv = self.worker_argv()
        if pool is not None:
            argv[argv.index("--pool") + 1] = pool
        if stop_timeout is not None:
            argv[argv.index("--stop-timeout") + 1] = str(stop_timeout)
        if limit is not None:
            if "--limit" in argv:
                del argv[argv.index("--limit") : argv.index("--limit") + 2]
            argv += ["--limit", str(limit)]
        argv += extra_args
        worker = Process.start("worker", argv, self.worker_env(**overrides), self.logs)
        worker.health_port = health_port
        self.workers.append(worker)
        return worker

    def worker_argv(self) -> list[str]:
        """The container's command, with the image's files it names replaced by this checkout's."""
        in_image = image_files()
        return [in_image.get(part, part) for part in self.container["command"]]

    def health_probe_argv(self) -> list[str]:
        """The container health check command, as ECS runs it (`CMD` form: exec the rest as is)."""
        command = self.container["healthCheck"]["command"]
        assert command[0] == "CMD", command
        return list(command[1:])

    def probe_health(self, port: int) -> int:
        """Run the task definition's health check against /health on `port`; returns its exit code (0 = healthy)."""
        declared = f":{self.container_env()['PREFECT_WORKER_WEBSERVER_PORT']}/"
        argv = self.health_probe_argv()
        assert any(declared in part for part in argv), f"the health check does not probe the declared port: {argv}"
        argv = [part.replace(declared, f":{port}/") for part in argv]
        return subprocess.run(argv, env=self.base_env(), capture_output=True, timeout=30).returncode

    def container_env(self) -> dict[str, str]:
        return {item["name"]: item["value"] for item in self.container["environment"]}

    # --- Prefect client --------------------------------------------------------------------------

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """Prefect's own sync client, pointed at this cluster's server."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        settings: dict[Any, Any] = {PREFECT_API_URL: self.api_url}
        if self.auth_string:
            settings[PREFECT_API_AUTH_STRING] = self.auth_string
        with temporary_settings(updates=settings), get_client(sync_client=True) as client:
            yield client

    def ensure_work_pool(self, name: str | None = None) -> None:
        """Create a process pool (the worker's by default) if it does not exist yet, so deployments can target it."""
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists

        with self.client() as client, contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=name or self.work_pool, type="process"))

    def deploy_flows(self) -> str:
        """Deploy flows/ the way the README tells users (`prefect --no-prompt deploy --all` with FLOW_BUCKET and
        WORK_POOL), from a copy that also holds the test flows, so those reach the bucket by the same push."""
        project = self.workdir / "project"
        shutil.rmtree(project, ignore_errors=True)
        shutil.copytree(FLOWS_DIR, project, ignore=shutil.ignore_patterns("__pycache__"))
        for extra in self.extra_flows:
            shutil.copy(extra, project / extra.name)
        return self.cli(["--no-prompt", "deploy", "--all"], project)

    def cli(self, args: list[str], cwd: Path) -> str:
        """The Prefect CLI as a user runs it from flows/: pointed at this server, with the stack's FLOW_BUCKET and
        WORK_POOL in the environment; its output, or a RuntimeError with it."""
        env = self.base_env()
        env.update(FLOW_BUCKET=FLOW_BUCKET, WORK_POOL=self.work_pool)
        if self.auth_string:  # the user's CLI, logged in to the server
            env["PREFECT_API_AUTH_STRING"] = self.auth_string
        argv = [str(BIN / "prefect"), *args]
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed ({result.returncode}):\n{output[-4000:]}")
        return output

    def create_automations(self, stuck_after: timedelta | None = None) -> list[str]:
        """Create the stack's automation as `pulumi up` does: RunAutomations' spec through its
        provider, for this cluster's pool (`stuck_after` replaces the window the stack gives it)."""
        from components.config import StackConfig
        from components.run_automations import (
            CONTROLLER_GRACE,
            AutomationProvider,
            automation_props,
            stuck_runs_automation,
        )
        from devtools.mocks import API_KEY, OWNER

        stuck_after = stuck_after or timedelta(minutes=StackConfig.stuck_run_minutes) + CONTROLLER_GRACE
        specs = [stuck_runs_automation(OWNER, self.work_pool, stuck_after)]
        credential = {"auth_string": self.auth_string} if self.auth_string else {"api_key": API_KEY}
        return [AutomationProvider().create(automation_props(spec, self.api_url, credential)).id for spec in specs]

    def create_stack_objects(self, run: Run) -> list[str]:
        """Create the Prefect objects a mocked program run declared on this cluster's server (`create_declared`)."""
        return create_declared(run, self.api_url)

    def save_secret(self, name: str, value: str) -> None:
        """A Prefect Secret block, as a user stores the webhook URL."""
        from prefect.blocks.system import Secret
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        updates: dict[Any, Any] = {PREFECT_API_URL: self.api_url}
        if self.auth_string:
            updates[PREFECT_API_AUTH_STRING] = self.auth_string
        with temporary_settings(updates=updates):
            Secret(value=value).save(name, overwrite=True)

    def deployment(self, name: str) -> Any:
        with self.client() as client:
            return client.read_deployment_by_name(name)

    def add_deployment(
        self, entrypoint: str, name: str, pool: str | None = None, like: str = "post-slack/post-slack"
    ) -> uuid.UUID:
        """A deployment of another flow in the pushed code, with the S3 pull steps Prefect stored for `like`."""
        template = self.deployment(like)
        if pool is not None:
            self.ensure_work_pool(pool)
        with self.client() as client:
            flow_id = client.create_flow_from_name(entrypoint.rsplit(":", 1)[1].replace("_", "-"))
            return client.create_deployment(
                flow_id=flow_id,
                name=name,
                entrypoint=entrypoint,
                pull_steps=template.pull_steps,
                work_pool_name=pool or self.work_pool,
                enforce_parameter_schema=False,
            )

    def trigger(self, deployment_id: uuid.UUID, parameters: dict[str, Any] | None = None, **kwargs: Any) -> uuid.UUID:
        with self.client() as client:
            return client.create_flow_run_from_deployment(deployment_id, parameters=parameters or {}, **kwargs).id

    def flow_runs(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        with self.client() as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))
        return {run.id: run for run in runs}

    def wait_final(self, ids: list[uuid.UUID], timeout: float) -> dict[uuid.UUID, Any]:
        """Wait until every run is in a final state (COMPLETED, FAILED, CRASHED, CANCELLED)."""

        def all_final() -> dict[uuid.UUID, Any] | None:
            runs = self.flow_runs(ids)
            final = [run for run in runs.values() if run.state is not None and run.state.is_final()]
            return runs if len(final) == len(ids) else None

        return wait_for(all_final, timeout, f"{len(ids)} flow run(s) final", interval=0.5)

    def wait_running(self, ids: list[uuid.UUID], timeout: float) -> None:
        """Wait until every run is RUNNING at once as the server sees it (its process started: in flight)."""

        def all_running() -> bool:
            runs = self.flow_runs(ids)
            return len(runs) == len(ids) and all(r.state is not None and r.state.is_running() for r in runs.values())

        wait_for(all_running, timeout, f"{len(ids)} flow run(s) RUNNING", interval=0.5)

    def run_events(self, flow_run_id: uuid.UUID) -> list[str]:
        """The event names the server recorded for a flow run, oldest first (what its automations saw)."""
        from prefect.events.filters import EventFilter, EventResourceFilter

        with self.client() as client:
            flow_run = EventFilter(resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]))
            page = client.read_events(flow_run, limit=50)  # the server's maximum page (the client's default is 100)
        return [event.event for event in sorted(page.events, key=lambda event: event.occurred)]

    def run_logs(self, flow_run_id: uuid.UUID) -> str:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        with self.client() as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        return "\n".join(log.message for log in logs)

    # --- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.stop_server()
        if self.s3 is not None:
            self.s3.stop()
        if self.webhook is not None:
            self.webhook.close()
        for stub in self.task_metadata:
            stub.close()


def create_declared(run: Run, api_url: str) -> list[str]:
    """Create the Prefect objects a mocked program run declared (work pool, automations), in the order it
    declared them, through the providers it pickled into them, as `pulumi up` does: the provider host
    unpickles `__provider` from the resource's properties and calls `check`, then `create`
    (pulumi/dynamic/__main__.py, `get_provider` and `Create`). The run must point at `api_url`."""
    import base64

    import dill

    ids = []
    for resource in run.resources:
        if not resource.typ.startswith("pulumi-python:dynamic/"):
            continue
        props = resource.plain_inputs
        assert props["api_url"] == api_url, f"{resource.name} points at {props['api_url']}"
        provider = dill.loads(base64.b64decode(props["__provider"]))  # noqa: S301 (pickled by our own program run)
        checked = provider.check({}, props).inputs
        ids.append(provider.create(checked).id)
    return ids


@contextlib.contextmanager
def server_only_cluster(prefix: str, **server_settings: str) -> Iterator[Cluster]:
    """Just a Prefect server (with these PREFECT_SERVER_* settings), for tests that drive workers or flow runs of
    their own; ended and removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = Cluster(workdir=workdir, server_settings=server_settings)
    try:
        cluster.start_server()
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def local_cluster(auth_string: str | None = None, deploy: bool = True) -> Iterator[Cluster]:
    """Server, S3 and webhook up, flows deployed; everything ended and removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="prefect-fargate-"))
    cluster = Cluster(workdir=workdir, auth_string=auth_string, container=rendered_worker_container(auth_string))
    try:
        cluster.start_s3()
        cluster.webhook = WebhookRecorder()
        cluster.start_server()
        if deploy:
            cluster.ensure_work_pool()
            cluster.deploy_flows()
            cluster.create_automations()
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)
