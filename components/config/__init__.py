"""The stack's configuration, read once and validated in one place.

Every problem is collected and reported together, before any resource is registered, with the key,
the bad value, what is allowed and the `pulumi config set` command that fixes it. The Prefect
credential's value (API key or auth string) never appears in a message.

`load_config` below is the one place the problems are gathered (one `Reader`, one ConfigError); the
rules of each concern are in its module: `prefect.py` (API URL, ids, credential), `network.py`,
`sizing.py` (task sizes, pool type, capacity, workers), `alerts.py`, `image.py` (workerImage, kmsKeyArn),
`region.py` (aws:region), `keys.py` (a key of this project the program does not read, a retired one) and
`reader.py` (reading a key and writing its message). The keys the program knows are the ones `_read` asks
its Reader for (`known_keys`); Pulumi.yaml declares the same set. Everything other modules use is importable
from `components.config`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pulumi

from components.config.alerts import read_alerts, read_notify_block
from components.config.image import CREDENTIALS_KEY, IMAGE_EXAMPLE, WorkerImage, read_kms_key, read_worker_image
from components.config.keys import RETIRED, refuse_unread
from components.config.network import NetworkConfig, read_controller_in_vpc, read_network
from components.config.prefect import (
    CREDENTIAL_ENV,
    PREFECT_CLOUD_API,
    PREFECT_CLOUD_DOMAIN,
    PrefectCredential,
    credential_fix,
    read_api_url,
    read_credential,
)
from components.config.reader import (
    NAMESPACE,
    ConfigError,
    Reader,
    nearest,
    read_bounded,
    read_minutes,
    set_command,
)
from components.config.region import read_region
from components.config.sizing import (
    CAPACITIES,
    CPU_ARCHITECTURES,
    FARGATE_SIZES,
    WORK_POOL_TYPES,
    TaskSize,
    WorkerScaling,
    read_capacities,
    read_fargate_size,
    read_scaling,
    read_work_pool,
)

__all__ = [
    "CAPACITIES",
    "CPU_ARCHITECTURES",
    "CREDENTIALS_KEY",
    "CREDENTIAL_ENV",
    "FARGATE_SIZES",
    "IMAGE_EXAMPLE",
    "LOG_LEVELS",
    "LOG_RETENTION_DAYS",
    "NAMESPACE",
    "PREFECT_CLOUD_API",
    "PREFECT_CLOUD_DOMAIN",
    "RETIRED",
    "WORK_POOL_TYPES",
    "ConfigError",
    "NetworkConfig",
    "PrefectCredential",
    "StackConfig",
    "TaskSize",
    "WorkerImage",
    "WorkerScaling",
    "known_keys",
    "load_config",
    "nearest",
    "set_command",
]

# Values CloudWatch Logs accepts for a retention policy, "never expire" left out on purpose:
# https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_WORK_POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """Everything the program needs from `pulumi config`, typed and validated."""

    # None only for a self-hosted server without authentication (see `read_credential`, the one rule).
    prefect_credential: PrefectCredential | None
    prefect_api_url: str
    work_pool: str = "fargate-pool"
    size: TaskSize = field(default_factory=TaskSize)
    cpu_architecture: str = "X86_64"
    desired_count: int = 1
    log_retention_days: int = 30
    log_level: str = "INFO"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    work_pool_type: str = "process"
    work_pool_concurrency: int | None = None  # None: no limit
    flow_run_size: TaskSize = field(default_factory=lambda: TaskSize(cpu=1024, memory=2048))  # `ecs` only
    alarms: bool = True  # the alert topic and alarms (components/alerts.py)
    alert_email: str | None = None  # subscribed to the alert topic
    kms_key_arn: str | None = None  # None: AWS-managed encryption (components/kms.py)
    worker_image: WorkerImage | None = None  # None: built from agent_image/ by `pulumi up`
    stuck_run_minutes: int = 15  # a run Pending this long is crashed (run_automations.py)
    retry_crashed_runs: bool = True  # the controller re-runs runs crashed by infrastructure (controller/recovery.py)
    worker_capacity: str = "FARGATE"  # the worker service's capacity provider
    flow_run_capacity: str = "FARGATE"  # `ecs` only: the flow-run tasks' capacity provider
    prefect_notify_block: str | None = None  # `<block-type-slug>/<block-name>` (run_notifications.py)
    scaling: WorkerScaling | None = None  # None: `desired_count` workers, always on (the default)
    late_run_minutes: int = 15  # the Late-run alarm fires when the pool's oldest Late run is this old
    scale_lead_minutes: int = 3  # a run due this soon counts as due, so a worker is up when it is

    @property
    def always_on_workers(self) -> int:
        """Workers that run whatever the backlog: the fixed count, or minWorkers when scaling."""
        return self.desired_count if self.scaling is None else self.scaling.min_workers

    controller_in_vpc: bool = False  # the stack controller runs in network.subnet_ids (stack_controller.py)

    @property
    def docker_platform(self) -> str:
        return CPU_ARCHITECTURES[self.cpu_architecture]


def load_config() -> StackConfig:
    """Read and validate the stack's config; raise ConfigError naming every bad key."""
    r = Reader()
    config = _read(r)
    refuse_unread(r, r.read)
    if r.errors:
        raise ConfigError("Invalid stack configuration:\n  - " + "\n  - ".join(r.errors))
    if config.prefect_credential is None:
        pulumi.log.warn(
            f"{NAMESPACE}:prefectApiKey is not set (nor prefectApiAuthString): the worker and `pulumi up` call "
            f"the Prefect API at {config.prefect_api_url} without credentials. That suits a self-hosted server "
            "without authentication only, and that API is open to anything that can reach it: keep it inside your "
            f"network. To send a key: {credential_fix('prefectApiKey')}; for a server started with "
            f"PREFECT_SERVER_API_AUTH_STRING: {credential_fix('prefectApiAuthString')}"
        )
    return config


def known_keys() -> frozenset[str]:
    """This project's keys that the program reads: those `_read` asks its Reader for. It reads every key whatever
    the values (a rule that depends on another key still reads both), so the set is the same for any config."""
    r = Reader()
    _read(r)
    return frozenset(r.read)


def _read(r: Reader) -> StackConfig:
    """Every key read and checked, its problems collected in `r`; values that failed are their defaults."""
    api_url, cloud = read_api_url(r)
    credential = read_credential(r, cloud)

    work_pool = r.string(
        "workPool",
        "fargate-pool",
        lambda v: bool(_WORK_POOL.match(v)),
        "letters, digits, '-', '_', '.', up to 128 characters",
        "fargate-pool",
    )

    size = read_fargate_size(r, "cpu", "memory", TaskSize())

    architecture = r.string(
        "cpuArchitecture", "X86_64", lambda v: v in CPU_ARCHITECTURES, " or ".join(CPU_ARCHITECTURES), "ARM64"
    )

    desired_count = read_bounded(r, "desiredCount", 1, 0, 100, "0 to 100 worker tasks")

    retention = r.integer("logRetentionDays", 30, "a CloudWatch retention period", "30")
    if retention not in LOG_RETENTION_DAYS:
        r.fail(
            "logRetentionDays",
            f"{retention} is not a period CloudWatch accepts (logs must expire)",
            ", ".join(map(str, LOG_RETENTION_DAYS)),
            set_command("logRetentionDays", "30"),
        )

    log_level = r.string("logLevel", "INFO", lambda v: v in LOG_LEVELS, ", ".join(LOG_LEVELS), "INFO")

    stuck_run_minutes = read_bounded(r, "stuckRunMinutes", 15, 1, 1440, "1 to 1440 minutes (a day)")
    retry_crashed_runs = r.boolean("retryCrashedRuns", True)

    network = read_network(r)
    work_pool_type, concurrency, flow_run_size = read_work_pool(r)
    if work_pool_type == "ecs" and "." in work_pool:
        # prefect-aws names task definition families prefect_<pool>_<deployment>; ECS refuses '.' there.
        r.fail(
            "workPool",
            f"{work_pool!r} has a '.', which ECS refuses in the task definition family the worker derives from it",
            "letters, digits, '-' and '_' with workPoolType ecs",
            set_command("workPool", work_pool.replace(".", "-")),
        )

    alarms, alert_email = read_alerts(r)
    notify_block = read_notify_block(r, alarms)
    region = read_region(r)
    kms_key_arn = read_kms_key(r, region)
    worker_image = read_worker_image(r)
    worker_capacity, flow_run_capacity = read_capacities(r, work_pool_type)
    scaling = read_scaling(r, desired_count, work_pool_type, concurrency, size)
    late_run_minutes = read_minutes(r, "lateRunMinutes", 15, 1, 1440)
    scale_lead_minutes = read_minutes(r, "scaleLeadMinutes", 3, 0, 60)
    controller_in_vpc = read_controller_in_vpc(r, network)
    return StackConfig(
        prefect_credential=credential,
        prefect_api_url=api_url,
        work_pool=work_pool,
        size=size,
        cpu_architecture=architecture,
        desired_count=desired_count,
        log_retention_days=retention,
        log_level=log_level,
        network=network,
        work_pool_type=work_pool_type,
        work_pool_concurrency=concurrency,
        flow_run_size=flow_run_size,
        alarms=alarms,
        alert_email=alert_email,
        kms_key_arn=kms_key_arn,
        worker_image=worker_image,
        stuck_run_minutes=stuck_run_minutes,
        retry_crashed_runs=retry_crashed_runs,
        worker_capacity=worker_capacity,
        flow_run_capacity=flow_run_capacity,
        prefect_notify_block=notify_block,
        scaling=scaling,
        late_run_minutes=late_run_minutes,
        scale_lead_minutes=scale_lead_minutes,
        controller_in_vpc=controller_in_vpc,
    )
