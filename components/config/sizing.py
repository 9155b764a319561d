"""What the stack runs and on what: Fargate cpu/memory pairs (the worker's and an `ecs` pool's flow runs'),
the work pool's type and concurrency, the CPU architecture, Fargate or Fargate Spot capacity, and the
number of workers (fixed, or following the backlog). These rules depend on each other, so they live
together."""

from __future__ import annotations

from dataclasses import dataclass

from components.config.reader import NAMESPACE, Reader, nearest, set_command

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

CPU_ARCHITECTURES = {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}
# `process`: the worker runs every flow run as a process in its own task; `ecs`: each flow run is a Fargate task.
WORK_POOL_TYPES = ("process", "ecs")
# Where a task runs: Fargate on demand, or Fargate Spot (about 70% cheaper, stopped with two minutes' notice).
CAPACITIES = ("FARGATE", "FARGATE_SPOT")


@dataclass(frozen=True, kw_only=True)
class TaskSize:
    """A Fargate cpu/memory pair that Fargate accepts."""

    cpu: int = 512
    memory: int = 1024


@dataclass(frozen=True, kw_only=True)
class WorkerScaling:
    """Workers that follow the pool's backlog (config minWorkers/maxWorkers), between `min_workers` and
    `max_workers`; `min_workers` 0 is scale to zero (components/worker_scaling.py, controller/backlog.py)."""

    min_workers: int
    max_workers: int


def read_fargate_size(r: Reader, cpu_key: str, memory_key: str, default: TaskSize) -> TaskSize:
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


def read_work_pool(r: Reader) -> tuple[str, int | None, TaskSize]:
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
    flow_run_size = read_fargate_size(r, "flowRunCpu", "flowRunMemory", default_size)
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


def read_capacities(r: Reader, pool_type: str) -> tuple[str, str]:
    """workerCapacity, and flowRunCapacity (which only an `ecs` pool's flow-run tasks have). Either architecture:
    "FARGATE_SPOT supports Linux tasks with the ARM64 architecture on platform version 1.4.0 or later" (ECS API
    reference, CapacityProviderStrategyItem; since September 2024), and the stack's tasks run on LATEST, which
    is 1.4.0 for Linux (the worker service's `platform_version`, components/agent_service.py; an `ecs` pool's
    RunTask names none, and ECS then uses LATEST)."""
    allowed = "FARGATE (on demand) or FARGATE_SPOT (about 70% cheaper, may be stopped with two minutes' notice)"
    worker = r.string("workerCapacity", "FARGATE", lambda v: v in CAPACITIES, allowed, "FARGATE_SPOT")
    flow_run = r.string("flowRunCapacity", "FARGATE", lambda v: v in CAPACITIES, allowed, "FARGATE_SPOT")
    if flow_run != "FARGATE" and pool_type != "ecs":
        r.fail(
            "flowRunCapacity",
            f"is {flow_run} but workPoolType is {pool_type!r}: process flow runs run in the worker's task",
            "flowRunCapacity only with workPoolType ecs (workerCapacity sets the worker's)",
            f"{set_command('workPoolType', 'ecs')}  (or: pulumi config rm {NAMESPACE}:flowRunCapacity)",
        )
    return worker, flow_run


def read_scaling(
    r: Reader, desired_count: int, pool_type: str, concurrency: int | None, size: TaskSize
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
    # Imported here: agent_service imports TaskSize from this package. The worker's --limit is run_limit's.
    from components.agent_service import run_limit

    return -(-concurrency // run_limit(size.memory))
