"""What every controller job gets: the settings (from the function's environment), the Prefect client,
boto3 clients, a clock, the invocation's time left and a logger, so each job's rules can be driven by fakes in
fast tests.

Environment (set by components/stack_controller.py):
- PREFECT_API_URL: the Prefect API (Cloud workspace URL or a self-hosted server's /api);
- PREFECT_CREDENTIAL_SECRET_ARN: the stack's credential secret (absent: a server without authentication);
- PREFECT_CREDENTIAL_ENV: PREFECT_API_KEY or PREFECT_API_AUTH_STRING, which kind the secret holds;
- WORK_POOL, WORK_POOL_TYPE (process or ecs), CLUSTER_ARN: what the controller watches;
- SILENCE_SECONDS: how long a process pool's RUNNING run may go unheard before its silence counts (recovery.py);
- STUCK_SECONDS: how long a run may stay PENDING (config stuckRunMinutes);
- RETRY_CRASHED_RUNS: true or false (config retryCrashedRuns): re-run runs crashed by infrastructure;
- the jobs' own: BACKLOG_* (backlog.py), ALERT_TOPIC_ARN and the rest (notify.py, off without it).

The credential is read from Secrets Manager once per warm container (the Lambda runtime keeps module state
between invocations), and again only when Prefect answers 401/403 (a rotated key: prefect_rest.py `renew`).
Every log line a job writes goes through `mask`, with every credential value this container has read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from .prefect_rest import PrefectRest, auth_header

MIN_STEP_SECONDS = 1.0  # no step is started with less time left than this (or than the longest step so far)
T = TypeVar("T")

# Secret ARN -> its value, for this warm container's life; and every value seen (the old one after a rotation).
_credentials: dict[str, str] = {}
_seen: set[str] = set()


@dataclass(frozen=True, kw_only=True)
class Settings:
    api_url: str
    credential_secret_arn: str | None
    credential_env: str
    pool_name: str
    pool_type: str
    cluster_arn: str
    silence_seconds: int
    stuck_seconds: int
    retry_crashed: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            api_url=env["PREFECT_API_URL"],
            credential_secret_arn=env.get("PREFECT_CREDENTIAL_SECRET_ARN") or None,
            credential_env=env.get("PREFECT_CREDENTIAL_ENV", "PREFECT_API_KEY"),
            pool_name=env["WORK_POOL"],
            pool_type=env["WORK_POOL_TYPE"],
            cluster_arn=env["CLUSTER_ARN"],
            silence_seconds=int(env["SILENCE_SECONDS"]),
            stuck_seconds=int(env["STUCK_SECONDS"]),
            retry_crashed=env.get("RETRY_CRASHED_RUNS", "true") == "true",
        )


@dataclass(frozen=True, kw_only=True)
class Context:
    settings: Settings
    prefect: PrefectRest
    ecs: Any  # a boto3 ECS client (DescribeTasks only)
    cloudwatch: Any = None  # a boto3 CloudWatch client (PutMetricData in the stack's namespace: backlog.py)
    sns: Any = None  # a boto3 SNS client (Publish to the alert topic: notify.py), when the stack has the topic
    now: Callable[[], datetime]
    log: Callable[[str], None]
    credential: str | None = None  # masked out of every log line (mask)
    env: Mapping[str, str] = field(default_factory=dict)  # the function's environment, for jobs' own settings
    time_left: Callable[[], float] = lambda: math.inf  # seconds before this invocation must stop (handler.py)


def each_in_time(ctx: Context, steps: list[tuple[str, Callable[[], T | None]]]) -> tuple[list[T], list[str], list[str]]:
    """Run each step (judge a run and act on it) in turn while time is left for one more (the longest so far, at
    least MIN_STEP_SECONDS); returns (what the steps returned, failures, run ids left for the next minute). One
    step's failure does not keep the others from theirs."""
    done: list[T] = []
    failed: list[str] = []
    left: list[str] = []
    longest = MIN_STEP_SECONDS
    for run_id, step in steps:
        before = ctx.time_left()
        if before <= longest:
            left.append(run_id)
            continue
        try:
            result = step()
            if result is not None:
                done.append(result)
        except Exception as exc:  # reported by the job, which then fails
            failed.append(f"flow run {run_id}: {exc}")
        if math.isfinite(before):
            longest = max(longest, before - ctx.time_left())
    return done, failed, left


def utcnow() -> datetime:
    return datetime.now(UTC)


def mask(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` on one line, without any of `secrets` (nor, for an auth string `user:password`, its password alone),
    nor any credential this container has read."""
    line = " ".join(str(text).split())
    parts = {part for secret in {*secrets, *_seen} if secret for part in (secret, *secret.split(":", 1)[1:])}
    for part in sorted(parts - {""}, key=len, reverse=True):  # the whole before its password
        line = line.replace(part, "***")
    return line


def masked(log: Callable[[str], None]) -> Callable[[str], None]:
    return lambda message: log(mask(message))


def read_credential(secrets: Any, secret_arn: str | None, fresh: bool = False) -> str | None:
    """The credential as components/api_key_secret.py stores it (the secret's plain string), from this container's
    cache unless `fresh` (or not read yet)."""
    if secret_arn is None:
        return None
    if fresh or secret_arn not in _credentials:
        value = str(secrets().get_secret_value(SecretId=secret_arn)["SecretString"])
        _credentials[secret_arn] = value
        _seen.add(value)
    return _credentials[secret_arn]


def build_context(
    env: Mapping[str, str],
    log: Callable[[str], None],
    now: Callable[[], datetime] = utcnow,
    time_left: Callable[[], float] = lambda: math.inf,
) -> Context:
    """Settings from `env`, the credential (cached: see the module's docstring), boto3 from the Lambda runtime
    (imported here: the rest of the package imports only the standard library)."""
    import boto3
    from botocore.config import Config

    settings = Settings.from_env(env)
    # Standard retry mode backs off on throttling (ThrottlingException) and transient errors, 3 attempts.
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10)
    secrets = lambda: boto3.client("secretsmanager", config=config)  # noqa: E731 (made only when read)
    arn, kind = settings.credential_secret_arn, settings.credential_env
    credential = read_credential(secrets, arn)
    return Context(
        settings=settings,
        prefect=PrefectRest(
            settings.api_url,
            auth_header(credential, kind),
            time_left=time_left,
            renew=(lambda: auth_header(read_credential(secrets, arn, fresh=True), kind)) if arn else None,
        ),
        ecs=boto3.client("ecs", config=config),
        cloudwatch=boto3.client("cloudwatch", config=config),
        sns=boto3.client("sns", config=config) if env.get("ALERT_TOPIC_ARN") else None,
        now=now,
        log=masked(log),
        credential=credential,
        env=env,
        time_left=time_left,
    )
