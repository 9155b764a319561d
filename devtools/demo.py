"""The stack on one machine, no AWS: `python -m devtools.demo` (Ctrl-C ends it).

On 127.0.0.1 it starts a Prefect server (with its UI and its scheduler) and a moto S3 server for the flow
bucket; runs the Pulumi program under mocks, pointed at that server, and creates the work pool and
automations it declares through the program's own providers; starts the worker with the task definition's
command, environment and health check; deploys `flows/` with the README's `prefect --no-prompt deploy --all`;
adds a cron schedule to the sample deployment, due at the next minute at least SCHEDULE_LEAD away; runs the
sample flow at once against a local stand-in for the Slack webhook; then waits for the server's scheduler to
start the scheduled run, and prints both results, the UI's address and a CLI command to explore with. Then it
keeps everything up for exploring until Ctrl-C (or ends at once with `--exit`), and stops every process it
started, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

SAMPLE = "post-slack/post-slack"
PORT = 4200  # the Prefect server's (and UI's) default port
# The demo's schedule is due at the first minute boundary at least this far ahead: the server's scheduler, which
# looks for new schedules every harness.SCHEDULER_LOOP_SECONDS (10 s), must have made it a run before it is due.
SCHEDULE_LEAD = timedelta(seconds=30)
SCHEDULED_TEXT = "Hi from Prefect's scheduler!"
DEPENDENCIES = ("prefect", "prefect_aws", "moto", "boto3", "s3fs", "pulumi", "dill")  # requirements-dev.txt


class DemoError(Exception):
    """A reason the demo cannot start, printed as one line."""


def _missing_dependency() -> str | None:
    missing = [name for name in DEPENDENCIES if importlib.util.find_spec(name) is None]
    executables = [name for name in ("prefect", "moto_server") if not (Path(sys.executable).parent / name).exists()]
    return ", ".join(missing + executables) or None


def _check_port(port: int, what: str, flag: str) -> None:
    with socket.socket() as sock:
        # As the servers bind (uvicorn and werkzeug set SO_REUSEADDR): a port left in TIME_WAIT by a demo
        # that just stopped is free for them, and so not reported busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(
                f"port {port} on 127.0.0.1 is busy (needed for {what}): stop what holds it, or pass {flag} <free port>"
            ) from None


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM ends the demo as Ctrl-C does, so the processes it started are stopped either way."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    """The program warns that the demo's server has no authentication: true, and meant."""
    import pulumi

    warn = pulumi.log.warn
    pulumi.log.warn = lambda *_, **__: None
    try:
        yield
    finally:
        pulumi.log.warn = warn


def cli_line(api_url: str) -> str:
    """A Prefect CLI command against the demo's server (the variable wins over the user's profile)."""
    return f"PREFECT_API_URL={api_url} prefect flow-run ls"


def due_minute(now: datetime, lead: timedelta = SCHEDULE_LEAD) -> datetime:
    """The first whole minute at least `lead` after `now` (cron's resolution is a minute)."""
    earliest = now + lead
    whole = earliest.replace(second=0, microsecond=0)
    return whole if whole == earliest else whole + timedelta(minutes=1)


def add_schedule(cluster: Any, deployment_id: Any, due: datetime, parameters: dict[str, Any]) -> str:
    """A daily cron schedule due at `due` (UTC), active, with its own parameters; its cron text."""
    from prefect.client.schemas.schedules import CronSchedule

    cron = f"{due.minute} {due.hour} * * *"
    with cluster.client() as client:
        schedule = [(CronSchedule(cron=cron, timezone="UTC"), True)]
        client.create_deployment_schedules(deployment_id, schedule, parameters=parameters)
    return cron


def scheduled_run(cluster: Any, deployment_id: Any, due: datetime) -> Any:
    """The run the server's scheduler made for `due`, once it exists (None until then)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with cluster.client() as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return next((r for r in runs if r.auto_scheduled and r.expected_start_time == due), None)


def run(server_port: int, s3_port: int, keep: bool) -> None:
    """Start everything, run the sample flow once, print what happened; stop it all on the way out."""
    from devtools.harness import Cluster, WebhookRecorder, wait_for
    from devtools.mocks import run_program

    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f} s] {text}", flush=True)

    api_url = f"http://127.0.0.1:{server_port}/api"
    with _quiet_warnings():  # a self-hosted server without auth: no credential, as the demo server has none
        program = run_program({"prefectApiUrl": api_url}, secret_keys=[])
    workdir = Path(tempfile.mkdtemp(prefix="prefect-fargate-demo-"))
    cluster = Cluster(
        workdir=workdir,
        server_port=server_port,
        s3_port=s3_port,
        container=program.container(),
        extra_flows=(),
        ui=True,
        scheduler=True,
    )
    try:
        say(f"starting moto S3 on 127.0.0.1:{s3_port} (flow bucket) and the Prefect server on {api_url}")
        cluster.start_s3()
        cluster.start_server()
        say("Prefect server healthy; creating the work pool and automations through the program's providers")
        cluster.create_stack_objects(program)
        worker = cluster.start_worker()
        say(f"worker started as the task definition declares: {' '.join(cluster.container['command'])}")
        wait_for(lambda: cluster.probe_health(worker.health_port or 0) == 0, 60, "worker health check passing")
        say("worker healthy (the task definition's health check passes); deploying flows/ with prefect deploy")
        cluster.deploy_flows()
        cluster.webhook = WebhookRecorder()
        deployment = cluster.deployment(SAMPLE)
        for entry in deployment.schedules:  # flows/prefect.yaml's `schedules:`, as the server stored them
            status = "active" if entry.active else "paused"
            say(f"{SAMPLE} schedule: cron {entry.schedule.cron} ({entry.schedule.timezone}), {status}")
        due = due_minute(datetime.now(UTC))
        cron = add_schedule(cluster, deployment.id, due, {"webhook_url": cluster.webhook.url, "text": SCHEDULED_TEXT})
        wait = (due - datetime.now(UTC)).total_seconds()
        say(f"{SAMPLE} schedule added for the demo: cron {cron} (UTC), active, due {due:%H:%M} UTC (in {wait:.0f} s)")
        say(f"running {SAMPLE} now, its webhook_url a local stand-in for Slack")
        run_id = cluster.trigger(deployment.id, {"webhook_url": cluster.webhook.url})
        _report(cluster, say, cluster.wait_final([run_id], timeout=180)[run_id], "flow run")
        say(f"waiting for Prefect's scheduler to start the run due at {due:%H:%M} UTC")
        found = wait_for(lambda: scheduled_run(cluster, deployment.id, due), wait + 60, "the scheduled run")
        final = _report(cluster, say, cluster.wait_final([found.id], timeout=wait + 180)[found.id], "scheduled run")
        late = (final.start_time - due).total_seconds()
        say(f"the scheduled run started {late:.1f} s after it was due")
        print(f"Prefect UI: http://127.0.0.1:{server_port}  (flow run: /runs/flow-run/{run_id})", flush=True)
        print(f"Explore it with the CLI: {cli_line(api_url)}", flush=True)
        if keep:
            print("Everything stays up for exploring; Ctrl-C stops it.", flush=True)
            while True:
                for process in (cluster.server, cluster.s3, worker):
                    if process is not None and not process.alive():
                        raise DemoError(f"{process.name} exited; its log: {process.log_path}")
                time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        print("stopping the worker, the Prefect server and moto S3 ...", flush=True)
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)
        print("stopped.", flush=True)


def _report(cluster: Any, say: Any, final: Any, what: str) -> Any:
    """Say how a run of the sample ended and what the webhook holds; a run that did not complete ends the demo."""
    state = final.state.type.value
    say(f"{what} {final.name} ({final.id}): {state}; the webhook received {cluster.webhook.received}")
    if state != "COMPLETED":
        print(cluster.run_logs(final.id)[-3000:], flush=True)
        raise DemoError(f"the sample {what} ended {state}; logs in {cluster.logs}")
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=PORT, help=f"the Prefect server's port (default {PORT})")
    parser.add_argument("--s3-port", type=int, default=5055, help="moto S3's port (default 5055)")
    parser.add_argument("--exit", action="store_true", help="stop everything once the sample run has ended")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        missing = _missing_dependency()
        if missing:
            raise DemoError(f"missing {missing}: run `pip install -r requirements-dev.txt` in this venv first")
        _check_port(args.port, "the Prefect server", "--port")
        _check_port(args.s3_port, "moto S3", "--s3-port")
        run(args.port, args.s3_port, keep=not args.exit)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
