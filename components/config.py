"""The stack's configuration, read once and validated in one place.

Every problem is collected and reported together, before any resource is registered, with the key,
the bad value, what is allowed and the `pulumi config set` command that fixes it. The Prefect
credential's value (API key or auth string) never appears in a message.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pulumi
from docker.auth import INDEX_NAME, split_repo_name
from docker.utils import parse_repository_tag
from docker.utils.build import match_tag
from email_validator import EmailNotValidError, validate_email

NAMESPACE = "prefect-fargate"
PREFECT_CLOUD_API = "https://api.prefect.cloud/api"
PREFECT_CLOUD_DOMAIN = "prefect.cloud"

# Fargate's accepted cpu -> memory (MiB) pairs (Linux, platform 1.4.0):
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

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
CPU_ARCHITECTURES = {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}
# `process`: the worker runs every flow run as a process in its own task; `ecs`: each flow run is a Fargate task.
WORK_POOL_TYPES = ("process", "ecs")
# Where a task runs: Fargate on demand, or Fargate Spot (about 70% cheaper, stopped with two minutes' notice).
CAPACITIES = ("FARGATE", "FARGATE_SPOT")

_UUID_TEXT = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID = re.compile(rf"^{_UUID_TEXT}$")
# A Prefect Cloud API URL, and the UI URL people paste instead (app.prefect.cloud/account/<a>/workspace/<w>/...).
_CLOUD_API_PATH = re.compile(rf"^/api/accounts/{_UUID_TEXT}/workspaces/{_UUID_TEXT}$", re.IGNORECASE)
_CLOUD_UI_PATH = re.compile(rf"^/account/(?P<account>{_UUID_TEXT})/workspace/(?P<workspace>{_UUID_TEXT})(/|$)", re.I)
# The ids in any Prefect Cloud URL, the UI's (/account/<a>/workspace/<w>) or the API's (/accounts/<a>/workspaces/<w>).
_CLOUD_URL_IDS = {
    "prefectAccountId": re.compile(rf"/accounts?/({_UUID_TEXT})(/|$)", re.I),
    "prefectWorkspaceId": re.compile(rf"/workspaces?/({_UUID_TEXT})(/|$)", re.I),
}
_WORK_POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# `<block-type-slug>/<block-name>`: Prefect allows lowercase letters, digits and '-' in both
# (prefect/types/names.py, BlockDocumentName; block type slugs are slugified names).
_NOTIFY_BLOCK = re.compile(r"^[a-z0-9-]+/[a-z0-9-]+$")
# A KMS key's ARN (a single-Region key's id is a UUID, a multi-Region key's `mrk-` and 32 hex digits).
_KMS_KEY_ARN = re.compile(
    rf"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z]{{2}}(-[a-z]+)+-\d):(?P<account>\d{{12}}):"
    rf"key/({_UUID_TEXT}|mrk-[0-9a-f]{{32}})$"
)
_KMS_ALIAS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:alias/")
# An image pinned by digest, and the two kinds of reference ECS pulls: a private ECR repository's
# (<account>.dkr.ecr.<region>.amazonaws.com[.cn], "Amazon ECR private registry") and a Secrets Manager secret's
# full ARN (with the 6-character suffix), which the execution role's policy can name exactly.
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_ECR_REGISTRY = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z]{2}(-[a-z]+)+-[0-9])\.amazonaws\.com(\.cn)?$"
)
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z]{2}(-[a-z]+)+-[0-9]:[0-9]{12}:secret:[\w/+=.@-]+-\w{6}$")
IMAGE_EXAMPLE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/prefect-worker@sha256:<64-hex-digits>"
CREDENTIALS_KEY = "workerImageRegistryCredentialsSecretArn"
_AWS_ID = {prefix: re.compile(rf"^{prefix}-[0-9a-f]{{8}}([0-9a-f]{{9}})?$") for prefix in ("vpc", "subnet", "sg")}


class ConfigError(pulumi.RunError):
    """Invalid stack configuration; RunError makes Pulumi print the message without a traceback."""


@dataclass(frozen=True, kw_only=True)
class TaskSize:
    """A Fargate cpu/memory pair that Fargate accepts."""

    cpu: int = 512
    memory: int = 1024


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """Where the worker runs; empty fields mean the account's default VPC and a new egress-only group."""

    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    assign_public_ip: bool = True


@dataclass(frozen=True, kw_only=True)
class WorkerImage:
    """An image built elsewhere (config workerImage), pinned by digest: nothing is built or pushed by the stack."""

    reference: str  # <registry>/<repository>@sha256:<64 hex>
    registry: str
    repository: str
    ecr_account: str | None = None  # set for a private ECR registry
    ecr_region: str | None = None
    credentials_secret_arn: str | None = None  # a non-ECR registry: ECS private registry authentication


# The two ways a client authenticates to the Prefect API: config key -> the client's environment variable.
CREDENTIAL_ENV = {"prefectApiKey": "PREFECT_API_KEY", "prefectApiAuthString": "PREFECT_API_AUTH_STRING"}


@dataclass(frozen=True, kw_only=True)
class PrefectCredential:
    """What clients send the Prefect API: an API key, or a self-hosted server's basic-auth string."""

    config_key: str  # prefectApiKey or prefectApiAuthString, for messages
    env_name: str  # PREFECT_API_KEY or PREFECT_API_AUTH_STRING, as Prefect's clients read it
    value: pulumi.Output[str]  # a Pulumi secret


@dataclass(frozen=True, kw_only=True)
class WorkerScaling:
    """Workers that follow the pool's backlog (config minWorkers/maxWorkers), between `min_workers` and
    `max_workers`; `min_workers` 0 is scale to zero (components/worker_scaling.py, controller/backlog.py)."""

    min_workers: int
    max_workers: int


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """Everything the program needs from `pulumi config`, typed and validated."""

    # None only for a self-hosted server without authentication (see `_credential`, the one rule).
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


def nearest(typed: str, allowed: tuple[str, ...]) -> str:
    """The allowed value closest to what was typed (difflib's ratio, ignoring case), for the fix."""
    return max(allowed, key=lambda value: difflib.SequenceMatcher(None, typed.lower(), value.lower()).ratio())


def set_command(key: str, example: str, *, secret: bool = False) -> str:
    """The exact command that sets `key`; lists use --path so the value keeps its array type."""
    flag = "--secret " if secret else ""
    return f"pulumi config set {flag}{NAMESPACE}:{key} {example}"


class _Reader:
    """Reads raw config strings and collects one message per bad key."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    @staticmethod
    def raw(key: str) -> str | None:
        value = pulumi.runtime.get_config(f"{NAMESPACE}:{key}")
        return None if value in (None, "") else str(value)

    def fail(self, key: str, problem: str, allowed: str, fix: str) -> None:
        self.errors.append(f"{NAMESPACE}:{key}: {problem}. Allowed: {allowed}. Fix: {fix}")

    def string(self, key: str, default: str, check: Callable[[str], bool], allowed: str, example: str) -> str:
        value = self.raw(key)
        if value is None:
            return default
        if not check(value):
            self.fail(key, f"{value!r} is not valid", allowed, set_command(key, example))
            return default
        return value

    def integer(self, key: str, default: int, allowed: str, example: str) -> int:
        value = self.raw(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            self.fail(key, f"{value!r} is not a whole number", allowed, set_command(key, example))
            return default

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(key, f"{value!r} is not a boolean", "true or false", set_command(key, str(default).lower()))
        return default

    def id_list(self, key: str, prefix: str) -> tuple[str, ...]:
        """A list of AWS ids, set with `--path 'key[0]'` (the CLI hands the program a JSON array; Pulumi.yaml's
        `type: array` makes the CLI refuse anything else, a comma-separated string included)."""
        value = self.raw(key)
        if value is None:
            return ()
        example = f"{prefix}-0123456789abcdef0"
        fix = f"pulumi config set --path '{NAMESPACE}:{key}[0]' {example}"
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:  # only with --skip-config-validation: shown as the bad value it is
            parsed = value
        items = parsed if isinstance(parsed, list) else [parsed]
        bad = [item for item in items if not (isinstance(item, str) and _AWS_ID[prefix].match(item))]
        if bad:
            self.fail(key, f"{bad!r} are not {prefix} ids", f"a list of {prefix}-... ids", fix)
            return ()
        return tuple(items)


def load_config() -> StackConfig:
    """Read and validate the stack's config; raise ConfigError naming every bad key."""
    r = _Reader()

    api_url, cloud = _prefect_api_url(r)
    credential = _credential(r, cloud)

    work_pool = r.string(
        "workPool",
        "fargate-pool",
        lambda v: bool(_WORK_POOL.match(v)),
        "letters, digits, '-', '_', '.', up to 128 characters",
        "fargate-pool",
    )
    if r.raw("prefectVersion") is not None:
        # Dropped: the image's Prefect must be the client's that `pulumi up` manages the pool with.
        r.fail(
            "prefectVersion",
            "is no longer read: the worker image's Prefect is the version pinned in requirements.txt",
            "no value; to change Prefect, edit prefect==... in requirements.txt, run pulumi install, then pulumi up",
            f"pulumi config rm {NAMESPACE}:prefectVersion",
        )

    size = _fargate_size(r, "cpu", "memory", TaskSize())

    architecture = r.string(
        "cpuArchitecture", "X86_64", lambda v: v in CPU_ARCHITECTURES, " or ".join(CPU_ARCHITECTURES), "ARM64"
    )

    desired_count = r.integer("desiredCount", 1, "0 to 100 worker tasks", "1")
    if not 0 <= desired_count <= 100:
        r.fail(
            "desiredCount",
            f"{desired_count} is out of range",
            "0 to 100 worker tasks",
            set_command("desiredCount", "1"),
        )

    retention = r.integer("logRetentionDays", 30, "a CloudWatch retention period", "30")
    if retention not in LOG_RETENTION_DAYS:
        r.fail(
            "logRetentionDays",
            f"{retention} is not a period CloudWatch accepts (logs must expire)",
            ", ".join(map(str, LOG_RETENTION_DAYS)),
            set_command("logRetentionDays", "30"),
        )

    log_level = r.string("logLevel", "INFO", lambda v: v in LOG_LEVELS, ", ".join(LOG_LEVELS), "INFO")

    stuck_run_minutes = r.integer("stuckRunMinutes", 15, "1 to 1440 minutes (a day)", "15")
    if not 1 <= stuck_run_minutes <= 1440:
        r.fail(
            "stuckRunMinutes",
            f"{stuck_run_minutes} is out of range",
            "1 to 1440 minutes (a day)",
            set_command("stuckRunMinutes", "15"),
        )

    network = _network(r)
    work_pool_type, concurrency, flow_run_size = _work_pool(r)
    if work_pool_type == "ecs" and "." in work_pool:
        # prefect-aws names task definition families prefect_<pool>_<deployment>; ECS refuses '.' there.
        r.fail(
            "workPool",
            f"{work_pool!r} has a '.', which ECS refuses in the task definition family the worker derives from it",
            "letters, digits, '-' and '_' with workPoolType ecs",
            set_command("workPool", work_pool.replace(".", "-")),
        )

    alarms, alert_email = _alerts(r)
    notify_block = _notify_block(r, alarms)
    kms_key_arn = _kms_key(r)
    worker_image = _worker_image(r)
    worker_capacity, flow_run_capacity = _capacities(r, work_pool_type, architecture)
    scaling = _scaling(r, desired_count, work_pool_type, concurrency, size)
    late_run_minutes = _minutes(r, "lateRunMinutes", 15, 1, 1440)
    scale_lead_minutes = _minutes(r, "scaleLeadMinutes", 3, 0, 60)
    controller_in_vpc = _controller_in_vpc(r, network)

    if r.errors:
        raise ConfigError("Invalid stack configuration:\n  - " + "\n  - ".join(r.errors))
    if credential is None:
        pulumi.log.warn(
            f"{NAMESPACE}:prefectApiKey is not set (nor prefectApiAuthString): the worker and `pulumi up` call "
            f"the Prefect API at {api_url} without credentials. That suits a self-hosted server without "
            "authentication only, and that API is open to anything that can reach it: keep it inside your "
            f"network. To send a key: {_credential_fix('prefectApiKey')}; for a server started with "
            f"PREFECT_SERVER_API_AUTH_STRING: {_credential_fix('prefectApiAuthString')}"
        )
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
        worker_capacity=worker_capacity,
        flow_run_capacity=flow_run_capacity,
        prefect_notify_block=notify_block,
        scaling=scaling,
        late_run_minutes=late_run_minutes,
        scale_lead_minutes=scale_lead_minutes,
        controller_in_vpc=controller_in_vpc,
    )


def _minutes(r: _Reader, key: str, default: int, low: int, high: int) -> int:
    allowed = f"{low} to {high} minutes"
    value = r.integer(key, default, allowed, str(default))
    if not low <= value <= high:
        r.fail(key, f"{value} is out of range", allowed, set_command(key, str(default)))
        return default
    return value


def _scaling(
    r: _Reader, desired_count: int, pool_type: str, concurrency: int | None, size: TaskSize
) -> WorkerScaling | None:
    """minWorkers/maxWorkers: unset (both), the fixed `desiredCount` as before; either set, workers follow the
    backlog between them (an unset minWorkers is 1, today's always-on worker; an unset maxWorkers is
    max(minWorkers, 1)). A maxWorkers the pool could never use is refused: an `ecs` worker only submits
    runs as tasks of their own (one is enough), and a `process` pool's workPoolConcurrency fills
    ceil(concurrency / --limit) workers."""
    given = {key: r.raw(key) for key in ("minWorkers", "maxWorkers")}
    if all(value is None for value in given.values()):
        return None
    allowed = "0 to 100 worker tasks, minWorkers <= maxWorkers"
    min_workers = r.integer("minWorkers", 1, allowed, "0")
    max_workers = r.integer("maxWorkers", max(min_workers, 1), allowed, "2")
    if desired_count != 1:  # Pulumi.yaml's default is sent as if set: only a changed count conflicts
        r.fail(
            "desiredCount",
            f"is {desired_count} but minWorkers/maxWorkers are set, which decide the number of workers",
            "desiredCount (a fixed count) or minWorkers/maxWorkers (following the backlog), not both",
            f"pulumi config rm {NAMESPACE}:desiredCount",
        )
    for key, value in (("minWorkers", min_workers), ("maxWorkers", max_workers)):
        if not 0 <= value <= 100:
            r.fail(key, f"{value} is out of range", allowed, set_command(key, "1"))
            return None
    if max_workers < 1:
        r.fail("maxWorkers", "is 0, so no flow run would ever start", allowed, set_command("maxWorkers", "1"))
        return None
    if min_workers > max_workers:
        r.fail(
            "minWorkers",
            f"{min_workers} is above maxWorkers {max_workers}",
            allowed,
            f"{set_command('minWorkers', str(max_workers))}  (or: {set_command('maxWorkers', str(min_workers))})",
        )
        return None
    useful = _useful_workers(pool_type, concurrency, size)
    if useful is not None and max_workers > useful:
        why = (
            "an `ecs` worker submits every run as a Fargate task of its own, so a second worker adds nothing"
            if pool_type == "ecs"
            else f"workPoolConcurrency {concurrency} fills {useful} worker(s) at the task's --limit"
        )
        r.fail(
            "maxWorkers",
            f"{max_workers} is more than the pool can use: {why}",
            f"at most {useful} here",
            set_command("maxWorkers", str(useful)),
        )
        return None
    return WorkerScaling(min_workers=min_workers, max_workers=max_workers)


def _useful_workers(pool_type: str, concurrency: int | None, size: TaskSize) -> int | None:
    """The most workers the pool can keep busy; None: no bound but the range."""
    if pool_type == "ecs":
        return 1
    if concurrency is None:
        return None
    # Imported here: agent_service imports this module (TaskSize). The worker's --limit is run_limit's.
    from components.agent_service import run_limit

    return -(-concurrency // run_limit(size.memory))


def _fargate_size(r: _Reader, cpu_key: str, memory_key: str, default: TaskSize) -> TaskSize:
    """A cpu/memory pair that Fargate accepts, or an error naming the key to change."""
    cpu = r.integer(cpu_key, default.cpu, "256, 512, 1024, 2048, 4096, 8192 or 16384", str(default.cpu))
    memory = r.integer(
        memory_key, default.memory, f"a memory size in MiB that Fargate pairs with {cpu_key}", str(default.memory)
    )
    if cpu not in FARGATE_SIZES:
        r.fail(
            cpu_key,
            f"{cpu} is not a Fargate cpu size",
            ", ".join(map(str, FARGATE_SIZES)),
            set_command(cpu_key, str(default.cpu)),
        )
    elif memory not in FARGATE_SIZES[cpu]:
        sizes = FARGATE_SIZES[cpu]
        r.fail(
            memory_key,
            f"{memory} MiB does not go with {cpu_key} {cpu}",
            f"for {cpu_key} {cpu}: {sizes[0]} to {sizes[-1]} MiB in the steps Fargate allows "
            f"({', '.join(map(str, sizes))})",
            set_command(memory_key, str(sizes[0])),
        )
    return TaskSize(cpu=cpu, memory=memory)


def _work_pool(r: _Reader) -> tuple[str, int | None, TaskSize]:
    """workPoolType, workPoolConcurrency, and the flow-run task size of an `ecs` pool."""
    pool_type = r.string(
        "workPoolType",
        "process",
        lambda v: v in WORK_POOL_TYPES,
        "process (flow runs inside the worker's task) or ecs (one Fargate task per flow run)",
        nearest(r.raw("workPoolType") or "", WORK_POOL_TYPES),
    )
    concurrency: int | None = None
    if r.raw("workPoolConcurrency") is not None:
        concurrency = r.integer("workPoolConcurrency", 0, "a whole number of flow runs, 1 or more", "10")
        if concurrency < 1:
            r.fail(
                "workPoolConcurrency",
                f"{concurrency} would let no flow run start",
                "a whole number of flow runs, 1 or more; unset for no limit",
                f"{set_command('workPoolConcurrency', '10')}  (or: pulumi config rm {NAMESPACE}:workPoolConcurrency)",
            )
    default_size = TaskSize(cpu=1024, memory=2048)
    flow_run_size = _fargate_size(r, "flowRunCpu", "flowRunMemory", default_size)
    if pool_type != "ecs":
        # The CLI sends Pulumi.yaml's defaults as if set: only a changed size is a mistake.
        changed = {
            "flowRunCpu": flow_run_size.cpu != default_size.cpu,
            "flowRunMemory": flow_run_size.memory != default_size.memory,
        }
        for key, is_changed in changed.items():
            if is_changed:
                r.fail(
                    key,
                    f"is set but workPoolType is {pool_type!r}: process flow runs share the worker's cpu/memory",
                    "flowRunCpu/flowRunMemory only with workPoolType ecs",
                    f"{set_command('workPoolType', 'ecs')}  (or: pulumi config rm {NAMESPACE}:{key})",
                )
    return pool_type, concurrency, flow_run_size


def _credential(r: _Reader, cloud: bool) -> PrefectCredential | None:
    """How clients authenticate to the Prefect API, the one rule (None: no credential):
    - Prefect Cloud: prefectApiKey, required;
    - a self-hosted server with basic auth (`PREFECT_SERVER_API_AUTH_STRING`): prefectApiAuthString;
    - a self-hosted server that checks a key: prefectApiKey;
    - a self-hosted server without authentication: nothing (load_config warns that its API is then
      open to anything that reaches it).
    Never both; either one a Pulumi secret. A value never appears in a message.
    """
    given = {key: r.raw(key) for key in CREDENTIAL_ENV}
    key_fix = _credential_fix("prefectApiKey")
    if cloud and given["prefectApiAuthString"] is not None:
        r.fail(
            "prefectApiAuthString",
            "is set but the API is Prefect Cloud's, which takes an API key, not a basic-auth string",
            "prefectApiAuthString only with a self-hosted prefectApiUrl",
            f"pulumi config rm {NAMESPACE}:prefectApiAuthString"
            + ("" if given["prefectApiKey"] is not None else f" && {key_fix}"),
        )
        return None
    set_keys = [key for key, value in given.items() if value is not None]
    if len(set_keys) > 1:
        r.fail(
            "prefectApiAuthString",
            "is set together with prefectApiKey (values not shown)",
            "one credential: prefectApiKey (Prefect Cloud, or a server that checks a key) or "
            "prefectApiAuthString (a self-hosted server's PREFECT_SERVER_API_AUTH_STRING)",
            f"pulumi config rm {NAMESPACE}:prefectApiKey  (or: pulumi config rm {NAMESPACE}:prefectApiAuthString)",
        )
        return None
    if not set_keys:
        if cloud:
            r.fail(
                "prefectApiKey",
                "is not set",
                "a Prefect API key stored as a Pulumi secret (Prefect Cloud needs one; only a self-hosted "
                "prefectApiUrl may go without)",
                key_fix,
            )
        return None
    (key,) = set_keys
    value = given[key]
    assert value is not None
    fix = _credential_fix(key)
    if not pulumi.runtime.is_config_secret(f"{NAMESPACE}:{key}"):
        r.fail(
            key,
            "is stored in plaintext in the stack file",
            "a Pulumi secret only",
            f"{fix}  (this re-stores it encrypted)",
        )
    elif key == "prefectApiKey" and any(ch.isspace() for ch in value):
        r.fail(key, "contains whitespace (value not shown)", "the key exactly as Prefect shows it", fix)
    elif value != value.strip():  # a password may hold spaces, but not a pasted newline at either end
        r.fail(
            key,
            "starts or ends with whitespace (value not shown)",
            "user:password exactly as the server's PREFECT_SERVER_API_AUTH_STRING",
            fix,
        )
    return PrefectCredential(config_key=key, env_name=CREDENTIAL_ENV[key], value=pulumi.Output.secret(value))


def _credential_fix(key: str) -> str:
    example = "<your-prefect-api-key>" if key == "prefectApiKey" else "'<user>:<password>'"
    return set_command(key, example, secret=True)


def _capacities(r: _Reader, pool_type: str, architecture: str) -> tuple[str, str]:
    """workerCapacity, and flowRunCapacity (which only an `ecs` pool's flow-run tasks have)."""
    allowed = "FARGATE (on demand) or FARGATE_SPOT (about 70% cheaper, may be stopped with two minutes' notice)"
    worker = r.string("workerCapacity", "FARGATE", lambda v: v in CAPACITIES, allowed, "FARGATE_SPOT")
    flow_run = r.string("flowRunCapacity", "FARGATE", lambda v: v in CAPACITIES, allowed, "FARGATE_SPOT")
    # "Fargate Spot only supports Linux tasks with the X86_64 architecture" (ECS developer guide,
    # Fargate capacity providers); flow-run tasks run on the worker's architecture.
    for key, capacity in (("workerCapacity", worker), ("flowRunCapacity", flow_run)):
        if capacity == "FARGATE_SPOT" and architecture != "X86_64":
            r.fail(
                key,
                f"is FARGATE_SPOT but cpuArchitecture is {architecture}, which Fargate Spot does not run",
                "FARGATE_SPOT only with cpuArchitecture X86_64",
                f"{set_command('cpuArchitecture', 'X86_64')}  (or: {set_command(key, 'FARGATE')})",
            )
    if flow_run != "FARGATE" and pool_type != "ecs":
        r.fail(
            "flowRunCapacity",
            f"is {flow_run} but workPoolType is {pool_type!r}: process flow runs run in the worker's task",
            "flowRunCapacity only with workPoolType ecs (workerCapacity sets the worker's)",
            f"{set_command('workPoolType', 'ecs')}  (or: pulumi config rm {NAMESPACE}:flowRunCapacity)",
        )
    return worker, flow_run


def _prefect_api_url(r: _Reader) -> tuple[str, bool]:
    """The API URL from exactly one of: prefectAccountId + prefectWorkspaceId (Prefect Cloud), or
    prefectApiUrl; and whether the stack points at Prefect Cloud (which needs a key). A prefectApiUrl
    that is not Cloud's counts as self-hosted even when it is refused, so its one error is the URL's."""
    account, workspace, url = r.raw("prefectAccountId"), r.raw("prefectWorkspaceId"), r.raw("prefectApiUrl")
    uuid_fix = "a UUID from your Prefect Cloud URL (app.prefect.cloud/account/<account>/workspace/<workspace>)"
    if url is not None and (account or workspace):
        r.fail(
            "prefectApiUrl",
            "is set together with prefectAccountId/prefectWorkspaceId",
            "either prefectApiUrl or the two Prefect Cloud ids, not both",
            f"pulumi config rm {NAMESPACE}:prefectApiUrl  (or remove the ids)",
        )
        return "", False
    if url is not None:
        return _checked_api_url(r, url)
    # A Prefect Cloud URL pasted into either key: its ids are the fix, for both keys.
    pasted = {
        key: found[1].lower()
        for key, pattern in _CLOUD_URL_IDS.items()
        for value in (account, workspace)
        if value is not None and (found := pattern.search(urlparse(value).path))
    }
    for key, value in (("prefectAccountId", account), ("prefectWorkspaceId", workspace)):
        if value is None:
            r.fail(
                key,
                "is not set (and prefectApiUrl is not set either)",
                f"{uuid_fix}; or set prefectApiUrl instead",
                set_command(key, pasted.get(key, "<uuid>")),
            )
        elif not _UUID.match(value.lower()):
            problem = "is a Prefect Cloud URL, not the id in it" if key in pasted and "/" in value else "is not a UUID"
            r.fail(key, f"{value!r} {problem}", uuid_fix, set_command(key, pasted.get(key, "<uuid>")))
    if account and workspace:
        return f"{PREFECT_CLOUD_API}/accounts/{account.lower()}/workspaces/{workspace.lower()}", True
    return "", True


def _checked_api_url(r: _Reader, url: str) -> tuple[str, bool]:
    """prefectApiUrl, without a trailing '/', if it is a Prefect API's: a Prefect Cloud workspace's
    (/api/accounts/<uuid>/workspaces/<uuid>) or a self-hosted server's (a path ending in /api); and
    whether it is Prefect Cloud's."""
    parsed = urlparse(url)
    path = parsed.path.rstrip("/")
    host = (parsed.hostname or "").lower()
    cloud = host == PREFECT_CLOUD_DOMAIN or host.endswith(f".{PREFECT_CLOUD_DOMAIN}")
    ui = _CLOUD_UI_PATH.match(parsed.path) if cloud else None
    if ui:
        ids = (("prefectAccountId", ui["account"].lower()), ("prefectWorkspaceId", ui["workspace"].lower()))
        r.fail(
            "prefectApiUrl",
            f"{url!r} is the Prefect Cloud UI's address, not the API's",
            "the ids in it, from which the API URL is built",
            " && ".join([f"pulumi config rm {NAMESPACE}:prefectApiUrl", *(set_command(k, v) for k, v in ids)]),
        )
        return "", cloud
    valid_path = _CLOUD_API_PATH.match(path) if cloud else path.rsplit("/", 1)[-1] == "api"
    if parsed.scheme not in ("http", "https") or not host or parsed.query or parsed.fragment or not valid_path:
        if cloud:
            fix = (
                f"pulumi config rm {NAMESPACE}:prefectApiUrl && {set_command('prefectAccountId', '<uuid>')} "
                f"&& {set_command('prefectWorkspaceId', '<uuid>')}"
            )
            allowed = f"for Prefect Cloud, {PREFECT_CLOUD_API}/accounts/<uuid>/workspaces/<uuid>, or the two ids"
        else:
            scheme = parsed.scheme if parsed.scheme in ("http", "https") else "https"
            fix = set_command("prefectApiUrl", f"{scheme}://{parsed.netloc or 'prefect.example.com'}/api")
            allowed = "the http(s) URL of a Prefect server's API, its path ending in /api"
        r.fail("prefectApiUrl", f"{url!r} is not a Prefect API URL", allowed, fix)
        return "", cloud
    return url.rstrip("/"), cloud


def _network(r: _Reader) -> NetworkConfig:
    vpc_id = r.string("vpcId", "", lambda v: bool(_AWS_ID["vpc"].match(v)), "a vpc-... id", "vpc-0123456789abcdef0")
    subnet_ids = r.id_list("subnetIds", "subnet")
    security_group_ids = r.id_list("securityGroupIds", "sg")
    assign_public_ip = r.boolean("assignPublicIp", True)
    vpc_fix = set_command("vpcId", "vpc-0123456789abcdef0")
    for key, given in (("subnetIds", subnet_ids), ("securityGroupIds", security_group_ids)):
        if given and not vpc_id:
            r.fail(key, "is set but vpcId is not", f"{key} together with the vpcId they belong to", vpc_fix)
    if not vpc_id and not assign_public_ip:
        r.fail(
            "assignPublicIp",
            "is false in the default VPC, whose subnets have no NAT: the worker could not reach ECR or the Prefect API",
            "true in the default VPC; false only with vpcId and private subnetIds that route through a NAT",
            set_command("assignPublicIp", "true"),
        )
    return NetworkConfig(
        vpc_id=vpc_id or None,
        subnet_ids=subnet_ids,
        security_group_ids=security_group_ids,
        assign_public_ip=assign_public_ip,
    )


def _controller_in_vpc(r: _Reader, network: NetworkConfig) -> bool:
    """controllerInVpc: the controller runs in the stack's subnets, for an API reachable only from the VPC. A Lambda
    function in a VPC never gets a public IP ("Giving Lambda functions access to resources in an Amazon VPC"), so
    it reaches Secrets Manager, ECS and CloudWatch only through a NAT gateway (or VPC endpoints): private subnets
    named explicitly, as assignPublicIp false already means for the worker. Off (the default), it runs outside any
    VPC, which is what a Prefect Cloud stack needs."""
    key = "controllerInVpc"
    in_vpc = r.boolean(key, False)
    if in_vpc and not (network.vpc_id and network.subnet_ids and not network.assign_public_ip):
        r.fail(
            key,
            "is true but the stack has no private subnets of its own (it needs vpcId, subnetIds and assignPublicIp "
            "false): a function in a VPC gets no public IP, so in public or default subnets it could reach nothing",
            "true only with vpcId, private subnetIds routed through a NAT gateway, and assignPublicIp false",
            f"{set_command('vpcId', 'vpc-0123456789abcdef0')} && pulumi config set --path "
            f"'{NAMESPACE}:subnetIds[0]' subnet-0123456789abcdef0 && {set_command('assignPublicIp', 'false')}  "
            f"(or: pulumi config rm {NAMESPACE}:{key})",
        )
        return False
    return in_vpc


def _alerts(r: _Reader) -> tuple[bool, str | None]:
    """alarms (default on) and alertEmail, a deliverable-looking address (no DNS lookup at deploy time)."""
    alarms = r.boolean("alarms", True)
    raw = r.raw("alertEmail")
    if raw is None:
        return alarms, None
    example = "oncall@example.com"
    try:
        email = validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError as error:
        r.fail(
            "alertEmail",
            f"{raw!r} is not an email address ({error})",
            "one email address",
            set_command("alertEmail", example),
        )
        return alarms, None
    if not alarms:
        r.fail(
            "alertEmail",
            "is set but alarms is false, so nothing would be sent to it",
            "alertEmail only with alarms true",
            f"{set_command('alarms', 'true')}  (or: pulumi config rm {NAMESPACE}:alertEmail)",
        )
    return alarms, email


def _notify_block(r: _Reader, alarms: bool) -> str | None:
    """prefectNotifyBlock: the Prefect notification block the run notifications send through. Whether it
    exists is checked by `pulumi up` against the server (run_notifications.notify_block_id)."""
    key, example = "prefectNotifyBlock", "slack-webhook/ops-alerts"
    raw = r.raw(key)
    if raw is None:
        return None
    if not _NOTIFY_BLOCK.match(raw):
        r.fail(
            key,
            f"{raw!r} is not <block-type-slug>/<block-name>",
            "a notification block's type slug and name, lowercase letters, digits and '-' "
            "(as `prefect block ls` shows them, e.g. slack-webhook/ops-alerts)",
            set_command(key, example),
        )
        return None
    if not alarms:
        r.fail(
            key,
            "is set but alarms is false, so no notification would be sent",
            f"{key} only with alarms true",
            f"{set_command('alarms', 'true')}  (or: pulumi config rm {NAMESPACE}:{key})",
        )
    return raw


def _kms_key(r: _Reader) -> str | None:
    """kmsKeyArn: a key's ARN in the stack's region. Not an alias's: IAM policies and key grants are
    evaluated on the key's ARN, so a role's statement on an alias ARN would never match, and an alias
    can be repointed to another key without `pulumi up` noticing."""
    raw = r.raw("kmsKeyArn")
    if raw is None:
        return None
    key = "kmsKeyArn"
    example = "arn:aws:kms:<region>:<account>:key/<key-id>"
    allowed = "the ARN of a symmetric KMS key, arn:<partition>:kms:<region>:<account>:key/<key-id>"
    match = _KMS_KEY_ARN.match(raw)
    lookup = f"$(aws kms describe-key --key-id {raw} --query KeyMetadata.Arn --output text)"  # the key's ARN
    if _KMS_ALIAS_ARN.match(raw) or raw.startswith("alias/"):
        r.fail(
            key,
            f"{raw!r} is an alias, not a key (IAM conditions match the key's ARN)",
            allowed,
            set_command(key, lookup),
        )
        return None
    if match is None:
        fix = set_command(key, lookup if _UUID.match(raw) or raw.startswith("mrk-") else example)
        r.fail(key, f"{raw!r} is not a KMS key ARN", allowed, fix)
        return None
    region = pulumi.runtime.get_config("aws:region")
    if region and match["region"] != region:
        r.fail(
            key,
            f"the key is in {match['region']}, the stack in {region} (a KMS key serves its own region)",
            f"a key in {region}",
            set_command(key, f"arn:{match['partition']}:kms:{region}:{match['account']}:key/<key-id>"),
        )
        return None
    return raw


def _worker_image(r: _Reader) -> WorkerImage | None:
    """workerImage, a `<registry>/<repository>@sha256:<digest>` reference read with docker-py's own reference
    helpers; a non-ECR registry only with workerImageRegistryCredentialsSecretArn (ECS private registry auth)."""
    raw, credentials = r.raw("workerImage"), r.raw(CREDENTIALS_KEY)
    if raw is None:
        if credentials is not None:
            r.fail(
                CREDENTIALS_KEY,
                "is set but workerImage is not (the image built by `pulumi up` is pushed to the stack's ECR)",
                f"{CREDENTIALS_KEY} only with a workerImage outside ECR",
                f"pulumi config rm {NAMESPACE}:{CREDENTIALS_KEY}",
            )
        return None
    fix = set_command("workerImage", IMAGE_EXAMPLE)
    allowed = "<registry>/<repository>@sha256:<64 hex digits>, the digest your registry reported for the push"
    name, digest = parse_repository_tag(raw)  # a tag in place of a digest comes back as the "digest"
    registry, repository = split_repo_name(name)
    if digest is None or not _DIGEST.match(digest):
        r.fail("workerImage", f"{raw!r} is not pinned by a sha256 digest", allowed, fix)
        return None
    if not match_tag(name) or ":" in repository:  # docker-py's reference grammar, and no tag next to the digest
        r.fail("workerImage", f"{raw!r} is not an image reference (lowercase, no tag)", allowed, fix)
        return None
    if registry == INDEX_NAME and not name.startswith(f"{INDEX_NAME}/"):
        r.fail("workerImage", f"{raw!r} names no registry", allowed, fix)
        return None
    ecr = _ECR_REGISTRY.match(registry)
    if ecr and credentials is not None:
        r.fail(
            CREDENTIALS_KEY,
            "is set but workerImage is in ECR, which the execution role pulls from with IAM",
            f"{CREDENTIALS_KEY} only with a workerImage outside ECR",
            f"pulumi config rm {NAMESPACE}:{CREDENTIALS_KEY}",
        )
    elif not ecr and credentials is None:
        r.fail(
            "workerImage",
            f"{raw!r} is not in a private ECR registry (<account>.dkr.ecr.<region>.amazonaws.com), and "
            f"{CREDENTIALS_KEY} is not set",
            "an ECR image; or another registry with a Secrets Manager secret holding its "
            '{"username": ..., "password": ...}',
            f"{set_command(CREDENTIALS_KEY, 'arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>')}  "
            f"(or: {fix})",
        )
    elif not ecr and credentials is not None and not _SECRET_ARN.match(credentials):
        r.fail(
            CREDENTIALS_KEY,
            f"{credentials!r} is not the full ARN of a Secrets Manager secret",
            "arn:<partition>:secretsmanager:<region>:<account>:secret:<name>-<6 characters>, as "
            "`aws secretsmanager describe-secret --secret-id <name> --query ARN` prints it",
            set_command(CREDENTIALS_KEY, "arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>"),
        )
    return WorkerImage(
        reference=raw,
        registry=registry,
        repository=repository,
        ecr_account=ecr["account"] if ecr else None,
        ecr_region=ecr["region"] if ecr else None,
        credentials_secret_arn=None if ecr else credentials,
    )
