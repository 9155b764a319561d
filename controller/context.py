"""What every controller job gets: the settings (from the function's environment), the Prefect client,
boto3 clients, a clock and a logger, so each job's rules can be driven by fakes in fast tests.

Environment (set by components/stack_controller.py):
- PREFECT_API_URL: the Prefect API (Cloud workspace URL or a self-hosted server's /api);
- PREFECT_CREDENTIAL_SECRET_ARN: the stack's credential secret (absent: a server without authentication);
- PREFECT_CREDENTIAL_ENV: PREFECT_API_KEY or PREFECT_API_AUTH_STRING, which kind the secret holds;
- WORK_POOL, WORK_POOL_TYPE (process or ecs), CLUSTER_ARN: what the controller watches;
- SILENCE_SECONDS: how long a process pool's RUNNING run may go without a heartbeat;
- STUCK_SECONDS: how long a run may stay PENDING (config stuckRunMinutes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .prefect_rest import PrefectRest, auth_header


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
        )


@dataclass(frozen=True, kw_only=True)
class Context:
    settings: Settings
    prefect: PrefectRest
    ecs: Any  # a boto3 ECS client (DescribeTasks only)
    cloudwatch: Any = None  # a boto3 CloudWatch client (PutMetricData in the stack's namespace: backlog.py)
    now: Callable[[], datetime]
    log: Callable[[str], None]
    credential: str | None = None  # masked out of every log line (handler.mask)
    env: Mapping[str, str] = field(default_factory=dict)  # the function's environment, for jobs' own settings


def utcnow() -> datetime:
    return datetime.now(UTC)


def read_credential(secrets: Any, secret_arn: str | None) -> str | None:
    """The credential as components/api_key_secret.py stores it: the secret's plain string."""
    return None if secret_arn is None else str(secrets.get_secret_value(SecretId=secret_arn)["SecretString"])


def build_context(env: Mapping[str, str], log: Callable[[str], None], now: Callable[[], datetime] = utcnow) -> Context:
    """Settings from `env`, the credential from Secrets Manager, boto3 from the Lambda runtime (imported here:
    the rest of the package imports only the standard library)."""
    import boto3
    from botocore.config import Config

    settings = Settings.from_env(env)
    # Standard retry mode backs off on throttling (ThrottlingException) and transient errors, 3 attempts.
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10)
    credential = read_credential(boto3.client("secretsmanager", config=config), settings.credential_secret_arn)
    return Context(
        settings=settings,
        prefect=PrefectRest(settings.api_url, auth_header(credential, settings.credential_env)),
        ecs=boto3.client("ecs", config=config) if settings.pool_type == "ecs" else None,
        cloudwatch=boto3.client("cloudwatch", config=config),
        now=now,
        log=log,
        credential=credential,
        env=env,
    )
