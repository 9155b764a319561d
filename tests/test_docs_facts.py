"""Every number and matched string README.md and docs/ state about the program is the one the program registers.

Each row reads a literal off a docs page with a pattern (on the page's text with runs of whitespace made one
space, so a rewrapped line still matches) and compares it with what the program registers under the mocks of
tests/conftest.py, or with what a component computes. Changing either side fails the row; a row whose pattern
no longer matches fails too, naming the page, so a reworded sentence gets its row updated rather than dropped.

Two kinds of row:
- `Fact`: the pattern's groups equal `registered()`, the same literals read from the program;
- `Rule`: `holds(*groups)` checks a statement about behaviour (a range, a formula, a message) and returns what
  went wrong, or None.
Add a row where a page states a new number. Prices and measured results are not program values: see the note
at the end of this file.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import (
    ACCOUNT,
    BASE_CONFIG,
    ORGANIZATION,
    PROJECT,
    REGION,
    STACK,
    Run,
    load_stack_config,
    name_values,
    run_program,
)
from packaging.specifiers import SpecifierSet

from components import agent_service, worker_scaling
from components.agent_image import pinned_version
from components.config import LOG_RETENTION_DAYS, ConfigError, known_keys
from components.config.region import REGION_ENV
from components.prefect_api import AUTH_STRING_FIX, KEY_FIX, reason
from components.work_pool import WorkPoolError, WorkPoolProvider, description_for
from controller import backlog, handler, notify, prefect_rest, recovery
from devtools import aws_quotas, demo, harness
from devtools.rehearse import SHAPES

ROOT = Path(__file__).resolve().parent.parent
ECS = {**BASE_CONFIG, "workPoolType": "ecs", "prefectNotifyBlock": "slack-webhook/ops-alerts"}
SPOT = {**ECS, "workerCapacity": "FARGATE_SPOT", "flowRunCapacity": "FARGATE_SPOT"}
SCALED = {**BASE_CONFIG, "minWorkers": "0", "maxWorkers": "2"}
OTHER_ACCOUNT_IMAGE = f"999999999999.dkr.ecr.us-east-1.amazonaws.com/prefect-worker@sha256:{'a' * 64}"
RUNS: dict[str, dict[str, str]] = {
    "default": BASE_CONFIG,
    "no-alarms": {**BASE_CONFIG, "alarms": "false"},
    "ecs": ECS,
    "spot": SPOT,
    "kms-ecs": {**ECS, "kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
    "worker-image": {**BASE_CONFIG, "workerImage": OTHER_ACCOUNT_IMAGE},
    "scaled": SCALED,
    "scaled-from-one": {**SCALED, "minWorkers": "1"},
    "no-workers": {**BASE_CONFIG, "desiredCount": "0"},
    "controller-in-vpc": {
        **{k: v for k, v in ECS.items() if k not in ("prefectAccountId", "prefectWorkspaceId")},
        "prefectApiUrl": "http://prefect.internal:4200/api",
        "vpcId": "vpc-0123456789abcdef0",
        "subnetIds": '["subnet-0123456789abcdef0"]',
        "assignPublicIp": "false",
        "controllerInVpc": "true",
    },
}
NOTIFY = {"prefectNotifyBlock": "slack-webhook/ops-alerts"}
RUNS.update({f"notify-{kind}": {**RUNS[kind], **NOTIFY} for kind in ("scaled", "scaled-from-one", "no-workers")})
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
ORDINALS = ["zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]
DAY, MINUTE = 86400, 60
AUTOMATION_TYPE = "pulumi-python:dynamic/prefect:Automation"


# -- what the docs say ---------------------------------------------------------------------------------------


@cache
def page(name: str) -> str:
    text = re.sub(r"\\\n", " ", (ROOT / name).read_text())  # a shell line continued on the next
    return re.sub(r"\s+", " ", text)


def stated(page_name: str, pattern: str) -> list[tuple[str, ...]]:
    """Every place the page states it: the pattern's groups at each match."""
    return [match.groups() for match in re.finditer(pattern, page(page_name))]


# -- what the program registers ------------------------------------------------------------------------------


@cache
def run(kind: str = "default") -> Run:
    return run_program(RUNS[kind])


@cache
def supervisor_module() -> Any:
    """agent_image/worker_supervisor.py (it ships alone in the image: not a package)."""
    sys.path.insert(0, str(ROOT / "agent_image"))
    return importlib.import_module("worker_supervisor")


@cache
def task_protection_module() -> Any:
    """agent_image/task_protection.py, which the supervisor imports in the image (not a package)."""
    sys.path.insert(0, str(ROOT / "agent_image"))
    return importlib.import_module("task_protection")


def n(value: float) -> str:
    """A registered number as the docs write it (10.0 is "10")."""
    return str(int(value)) if float(value).is_integer() else str(value)


def inputs(typ: str, name: str = "", kind: str = "default") -> dict[str, Any]:
    return run(kind).one(typ, name).plain_inputs


def container(kind: str = "default") -> dict[str, Any]:
    return run(kind).container()


def kept_images(rule: int) -> str:
    """countNumber of the ECR lifecycle policy's rule: 0, the stack's own builds; 1, any image."""
    policy = json.loads(inputs("aws:ecr/lifecyclePolicy:LifecyclePolicy")["policy"])
    return n(policy["rules"][rule]["selection"]["countNumber"])


def build_tag_prefix() -> str:
    """The tag prefix the lifecycle protects, if every tag the stack builds starts with it."""
    (prefix,) = json.loads(inputs("aws:ecr/lifecyclePolicy:LifecyclePolicy")["policy"])["rules"][0]["selection"][
        "tagPrefixList"
    ]
    tag = inputs("docker:index/image:Image")["imageName"].rsplit(":", 1)[1]
    return prefix if tag.startswith(prefix) else f"{prefix} (not the built tag {tag})"


def env(kind: str = "default") -> dict[str, str]:
    return name_values(container(kind)["environment"])


def health(key: str) -> str:
    return n(container()["healthCheck"][key])


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def supervisor(name: str) -> int:
    return int(flag(container()["command"], name))


def alarm(suffix: str, kind: str = "default") -> dict[str, Any]:
    return inputs("aws:cloudwatch/metricAlarm:MetricAlarm", f"-{suffix}", kind)


def alarm_minutes(suffix: str, kind: str = "default") -> str:
    spec = alarm(suffix, kind)
    return n(spec["period"] * spec["evaluationPeriods"] / MINUTE)


def alarm_count(kind: str) -> int:
    return len(run(kind).of_type("aws:cloudwatch/metricAlarm:MetricAlarm"))


def automation(name: str, kind: str = "default") -> dict[str, Any]:
    """A Prefect automation's name and body, as the provider is given them."""
    props = inputs("pulumi-python:dynamic/prefect:Automation", name, kind)
    return {"name": props["name"], **json.loads(props["automation"])}


def within_minutes(name: str, kind: str = "default") -> str:
    return n(automation(name, kind)["trigger"]["within"] / MINUTE)


def pool(kind: str = "default") -> dict[str, Any]:
    return inputs("pulumi-python:dynamic/prefect:WorkPool", kind=kind)


def pool_default(variable: str, kind: str = "ecs") -> Any:
    """A variable's default in the `ecs` pool's base job template."""
    return json.loads(pool(kind)["base_job_template"])["variables"]["properties"][variable]["default"]


def queue(suffix: str) -> dict[str, Any]:
    (found,) = [q.plain_inputs for q in run("ecs").of_type("aws:sqs/queue:Queue") if q.name.endswith(suffix)]
    return found


# The stack's mark as the docs write it (prefect_api.owner_mark): the organization first, as "test" is in it.
MARK_PARTS = {"organization": ORGANIZATION, "project": PROJECT, "stack": STACK, "account": ACCOUNT, "region": REGION}


def placeholders(text: str, **names: str) -> str:
    """`text` with this run's values put back as the docs' placeholders (`<stack>`, `<pool>`, ...)."""
    for placeholder, value in names.items():
        text = text.replace(value, f"<{placeholder}>")
    return text


def statements(role_policy: str, kind: str) -> list[dict[str, Any]]:
    return json.loads(inputs("aws:iam/rolePolicy:RolePolicy", role_policy, kind)["policy"])["Statement"]


def config_accepts(key: str, value: int) -> bool:
    try:
        load_stack_config({**BASE_CONFIG, key: str(value)})
    except ConfigError:
        return False
    return True


def config_error(config: dict[str, str]) -> str:
    try:
        load_stack_config({**BASE_CONFIG, **config})
    except ConfigError as error:
        return str(error)
    return "(accepted)"


# -- rows ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """The page states `registered()`: the same literals, in the order of the pattern's groups."""

    page: str
    pattern: str
    registered: Callable[[], tuple[str, ...] | str]

    def problem(self, *literals: str) -> str | None:
        expected = self.registered()
        expected = expected if isinstance(expected, tuple) else (expected,)
        return None if literals == expected else f"states {literals}, the program registers {expected}"


@dataclass(frozen=True)
class Rule:
    """What the page states about behaviour holds: `holds(*groups)` says what does not, or None."""

    page: str
    pattern: str
    holds: Callable[..., str | None]

    def problem(self, *literals: str) -> str | None:
        return self.holds(*literals)


def bounds(key: str) -> Callable[[str, str], str | None]:
    """A range `<low> to <high>` config accepts, and nothing just outside it."""

    def holds(low: str, high: str) -> str | None:
        lo, hi = int(low), int(high)
        verdicts = {v: config_accepts(key, v) for v in (lo - 1, lo, hi, hi + 1)}
        wanted = {lo - 1: False, lo: True, hi: True, hi + 1: False}
        return None if verdicts == wanted else f"{key} accepted: {verdicts}"

    return holds


def limits_at(limits: str, memories: str) -> str | None:
    got = [agent_service.run_limit(int(m)) for m in memories.split(", ")]
    return None if got == [int(x) for x in limits.split(", ")] else f"run_limit gives {got}"


def limit_formula(percent: str, worker: str, per_run: str) -> str | None:
    """`--limit` is `percent`% of the memory, minus the worker's MiB, divided by MiB per run (at least 1)."""
    for memory in range(512, 120 * 1024 + 1, 512):
        formula = max(1, math.floor((memory * int(percent) / 100 - int(worker)) / int(per_run)))
        if agent_service.run_limit(memory) != formula:
            return f"at {memory} MiB run_limit gives {agent_service.run_limit(memory)}, the formula {formula}"
    return None


def limit_for(memory: str, limit: str) -> str | None:
    got = agent_service.run_limit(int(memory))
    return None if got == int(limit) else f"run_limit({memory}) is {got}"


def memory_left_free(percent: str) -> str | None:
    """What `--limit` leaves of the task's memory: nothing of it counts towards the runs."""
    largest = 120 * 1024
    usable = (
        agent_service.run_limit(largest) * agent_service.FLOW_RUN_RSS_MIB + agent_service.WORKER_RSS_MIB
    ) / largest
    return None if math.isclose(1 - usable, int(percent) / 100, abs_tol=0.01) else f"leaves {1 - usable:.0%} free"


def python_versions(*versions: str) -> str | None:
    """The minor versions stated are exactly those pyproject's `requires-python` allows."""
    spec = SpecifierSet(re.search(r'requires-python = "([^"]+)"', (ROOT / "pyproject.toml").read_text())[1])
    allowed = [f"3.{minor}" for minor in range(30) if f"3.{minor}" in spec]
    return None if list(versions) == allowed else f"requires-python allows {allowed}"


def refused_credential(what: str) -> str | None:
    """A 401 from the Prefect API, read as the provider reads it for a key (KEY_FIX) or an auth string."""
    request = httpx.Request("GET", "https://prefect.example.com/api/work_pools/x")
    error = httpx.HTTPStatusError("401", request=request, response=httpx.Response(401, request=request))
    fix = KEY_FIX if what == "API key" else AUTH_STRING_FIX
    message = f"the Prefect API refused the {what} (HTTP 401)"
    return None if reason(error, fix).startswith(message) else f"reason() says {reason(error, fix)!r}"


def another_stacks_pool(name: str, owner: str, mine: str, message: str) -> str | None:
    """The provider's refusal of a pool another stack's description marks, as the docs quote it."""

    class Pool:
        description = description_for(owner)

    try:
        WorkPoolProvider()._claim(Pool(), {"name": name, "owner": mine})
    except WorkPoolError as error:
        return None if str(error) in message else f"the provider says {str(error)!r}"
    return "the provider took another stack's pool"


def stop_log_line(example: str) -> str | None:
    """The docs' example line is what the stopped-task rule's input template writes."""
    target = inputs("aws:cloudwatch/eventTarget:EventTarget", "alerts-stopped-tasks")
    template = json.loads(target["inputTransformer"]["inputTemplate"])["message"]
    shape = re.escape(template)
    for variable in target["inputTransformer"]["inputPaths"]:
        shape = shape.replace(re.escape(f"<{variable}>"), ".+")
    return None if re.fullmatch(shape, example) else f"the template writes {template!r}"


def every_alarm_notifies_on_alarm_and_ok() -> str | None:
    notifier = run().one("aws:lambda/function:Function", "notifier").outputs["arn"]
    for spec in (r.plain_inputs for r in run().of_type("aws:cloudwatch/metricAlarm:MetricAlarm")):
        if spec.get("alarmActions") != [notifier] or spec.get("okActions") != [notifier]:
            return f"{spec['name']} sends {spec.get('alarmActions')} / {spec.get('okActions')}"
    return None


NOTIFIER_INVOKE = ("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig", "notifier")


def notification_fields(fields: str) -> str | None:
    """The docs name exactly the fields the notifier's JSON has (alert_notifier/handler.py)."""
    from test_alert_notifier import alarm_event

    from alert_notifier.handler import cloudwatch_notification

    stated, built = re.findall(r"`(\w+)`", fields), list(cloudwatch_notification(alarm_event()))
    return None if stated == built else f"the notifier sends {built}"


# -- the failed-run notices (controller/notify.py) -----------------------------------------------------------------


def failed_run_sample(sample: str) -> str | None:
    """docs/alerts.md's sample email is what the notify job writes for the run it describes: the program's API URL,
    pool, region, alert prefix and worker log group (the sample's stack put in for the mocks'); the run's names, state,
    times and message as the sample gives them."""
    from controller.context import Context, Settings

    found = re.match(
        r"Subject: prefect-fargate-(\S+): .*? ended (\w+)\. Flow: (\S+) Deployment: (\S+) Flow run: (\S+) \((\S+)\)"
        r" State: \w+ at (\S+ \S+) UTC \(started (\S+ \S+) UTC\) Message: (.*?) Open it:",
        sample,
    )
    if not found:
        return "the sample does not read as a notice"
    stack, state, flow, deployment, name, run_id, ended, started, message = found.groups()
    env = controller_env()
    iso = lambda text: text.replace(" ", "T") + "+00:00"  # noqa: E731
    flow_run = {
        "id": run_id,
        "name": name,
        "flow_id": "f",
        "deployment_id": "d",
        "state": {"id": "s", "type": state.upper(), "name": state, "timestamp": iso(ended), "message": message},
        "start_time": iso(started),
        "end_time": iso(ended),
    }
    settings = notify.NoticeSettings.from_environ(
        {
            **env,
            "ALERT_PREFIX": env["ALERT_PREFIX"].replace(STACK, stack),
            "WORKER_LOG_GROUP": env["WORKER_LOG_GROUP"].replace(f"/{STACK}/", f"/{stack}/"),
            "AWS_REGION": REGION,
        }
    )
    ctx = Context(settings=Settings.from_env(env), prefect=None, ecs=None, now=datetime.now, log=print)
    written = notify.notice(ctx, settings, flow_run, flow, deployment)
    text = " ".join(f"Subject: {written.subject}\n\n{written.text}".split())
    return None if text == sample else f"the job writes: {text}"


def notice_fields(fields: str) -> str | None:
    """The JSON fields docs/alerts.md names are the notice's (controller/notify.py `notice`)."""
    from test_controller_notify import Prefect, Sns, ended, minute, notify_context, structured

    sns = Sns()
    minute(notify_context(Prefect([ended(1)]), sns))
    stated, built = re.findall(r"`(\w+)`", fields), list(structured(sns.published[0]))
    return None if stated == built else f"the notice has {built}"


def controller_publishes_to_the_topic_only() -> str | None:
    """The controller's role may sns:Publish to the alert topic, nothing else of SNS (and the key only through SNS)."""
    sns = [s for s in statements("controller-policy", "default") if "sns" in json.dumps(s)]
    topic = run().outputs["alertTopicArn"]
    expected = [{"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic}]
    return None if sns == expected else f"the controller's SNS statements: {sns}"


def notice_within(minutes: str) -> str | None:
    """A run that ends just after a minute's listing is read the next minute (60 s) and published within that
    invocation (its timeout): under `minutes`."""
    timeout = inputs("aws:lambda/function:Function", "controller")["timeout"]
    rate = inputs("aws:cloudwatch/eventRule:EventRule", "controller")["scheduleExpression"]
    longest = MINUTE + timeout if rate == "rate(1 minute)" else math.inf
    return None if longest < WORDS.index(minutes) * MINUTE else f"{longest} s is not within {minutes} minutes"


def controller_jobs(*jobs: str) -> str | None:
    ordered = [{"the pool's backlog": "backlog", "recovery": "recovery", "notices": "notify"}.get(j, j) for j in jobs]
    return None if ordered == list(handler.JOBS) else f"the handler runs {list(handler.JOBS)}"


def no_key_of_its_own() -> str | None:
    made = {kind: len(run(kind).of_type("aws:kms/key:Key")) for kind in RUNS}
    return None if not any(made.values()) else f"KMS keys made: {made}"


def notifier_invoker() -> str:
    """The principal of every notifier permission, one per alarm (anything else: what differs)."""
    notifier = inputs("aws:lambda/function:Function", "notifier")["name"]
    permissions = [r.plain_inputs for r in run().of_type("aws:lambda/permission:Permission")]
    mine = [p for p in permissions if p["function"] == notifier]
    alarms = {a.plain_inputs["name"] for a in run().of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    if {p["sourceArn"].rsplit(":", 1)[1] for p in mine} != alarms or len(mine) != len(alarms):
        return f"{len(mine)} permissions for {len(alarms)} alarms"
    (principal,) = {p["principal"] for p in mine}
    return principal


def sqs_data_key_requests(minutes: str, requests: str) -> str | None:
    """A data key reused for `minutes` (the queues' setting with a key) means this many requests in 730 h."""
    reuse = {
        q.plain_inputs.get("kmsDataKeyReusePeriodSeconds", 300) for q in run("kms-ecs").of_type("aws:sqs/queue:Queue")
    }
    if reuse != {int(minutes) * MINUTE}:
        return f"queues reuse a data key for {reuse} s"
    count = 730 * 60 // int(minutes)
    return None if int(requests.replace(",", "")) == count else f"730 h / {minutes} min is {count}"


def cpu_vcpu(kind: str = "default") -> str:
    return n(int(inputs("aws:ecs/taskDefinition:TaskDefinition", kind=kind)["cpu"]) / 1024)


def memory_gb() -> str:
    return n(int(inputs("aws:ecs/taskDefinition:TaskDefinition")["memory"]) / 1024)


def worker_command_text() -> str:
    """The worker's command as the docs print it, placeholders in."""
    command = container()["command"]
    text = " ".join(command).replace(f"--pool {flag(command, '--pool')}", "--pool <workPool>")
    return text.replace(f"--limit {flag(command, '--limit')}", "--limit <N>")


def spot_strategy() -> dict[str, Any]:
    (strategy,) = inputs("aws:ecs/service:Service", kind="spot")["capacityProviderStrategies"]
    return strategy


def trust_condition_keys() -> tuple[str, ...]:
    (statement,) = json.loads(inputs("aws:iam/role:Role", "roles-task")["assumeRolePolicy"])["Statement"]
    return tuple(key for operator in statement["Condition"].values() for key in operator)


def outputs(kind: str) -> set[str]:
    return set(run(kind).outputs)


def names(text: str) -> set[str]:
    return set(re.findall(r"`(\w+)`", text))


def equal_sets(kind: str, minus: str | None = None) -> Callable[[str], str | None]:
    """The outputs named are exactly the run's (beyond `minus`'s run's)."""

    def holds(text: str) -> str | None:
        expected = outputs(kind) - (outputs(minus) if minus else set())
        return None if names(text) == expected else f"the program exports {sorted(expected)}"

    return holds


def ecr_pull_actions() -> list[str]:
    policy = statements("roles-execution-policy", "worker-image")
    (pull,) = [s for s in policy if str(s["Resource"]).endswith(":repository/prefect-worker")]
    assert pull["Resource"].startswith("arn:aws:ecr:us-east-1:999999999999:")
    return sorted(pull["Action"])


def token_resource() -> str:
    (token,) = [
        s for s in statements("roles-execution-policy", "worker-image") if s["Action"] == "ecr:GetAuthorizationToken"
    ]
    return token["Resource"]


def controller_env(kind: str = "default") -> dict[str, str]:
    return dict(inputs("aws:lambda/function:Function", "controller", kind)["environment"]["variables"])


def controller_bound(silence: int, schedule: int, minutes: int) -> str | None:
    """`silence` + the schedule's gap + one whole invocation (its timeout) is under `minutes`, and not by a minute."""
    longest = silence + schedule + inputs("aws:lambda/function:Function", "controller")["timeout"]
    return None if (minutes - 1) * MINUTE <= longest < minutes * MINUTE else f"{longest} s is not under {minutes} min"


def recovery_says(stated_message: str, case: str) -> str | None:
    """The message recovery writes in `case`, from its own rules driven with the fast tests' fakes."""
    from test_controller_recovery import FakeEcs, FakePrefect, context, flow_run, states, task

    ctx_settings = {"silence": int(controller_env()["SILENCE_SECONDS"])}
    if case == "dead":
        prefect = FakePrefect([flow_run(1, worker=task(1), retries=0)])
        recovery.run(context(prefect, ecs=FakeEcs({task(1): "STOPPED"}), **ctx_settings))
        written = prefect.changes[0][1]["message"].replace(task(1), "<task ARN>")
    elif case == "never started":
        submissions = states(*(["SCHEDULED", "PENDING", "PENDING"] * (recovery.HAND_BACK_CAP + 1)))
        prefect = FakePrefect([flow_run(1, "PENDING", run_count=0)], histories={"run-1": submissions})
        recovery.run(context(prefect, **ctx_settings))
        written = prefect.changes[0][1]["message"]
    else:
        prefect = FakePrefect([flow_run(1, worker=task(1)), flow_run(2)], heard=set())
        try:
            recovery.run(context(prefect, **ctx_settings))
        except recovery.RecoveryError as raised:
            written = str(raised).replace("2 RUNNING", "N RUNNING")
        else:
            return "recovery did not fail"
    return None if stated_message in written else f"recovery writes {written!r}"


def heartbeat_choice(beat: str, minimum: str, minutes: str, fraction: str) -> str | None:
    """The stack's beat is Prefect's default heartbeat_frequency, its minimum is Prefect's, and the arithmetic."""
    from prefect.flow_engine import MINIMUM_HEARTBEAT_INTERVAL
    from prefect.settings.models.flows import FlowsSettings

    default = FlowsSettings.model_fields["heartbeat_frequency"].default
    stack = int(env()["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
    facts = (int(beat), int(minimum), int(minutes), fraction)
    wanted = (stack, MINIMUM_HEARTBEAT_INTERVAL, stack // MINUTE, {6: "sixth"}.get(stack // int(minimum)))
    return None if default == stack and facts == wanted else f"Prefect's default {default}; stated {facts}, {wanted}"


def observer_messages(*prefixes: str) -> str | None:
    """The prefixes recovery recognises are the ones the docs quote, and prefect-aws's observer writes each."""
    import prefect_aws.observers.ecs as observer

    source = Path(observer.__file__).read_text()
    missing = [p for p in prefixes if p.rstrip(": ") not in source]
    if tuple(prefixes) != recovery.OBSERVER_CRASHES or missing:
        return f"recovery knows {recovery.OBSERVER_CRASHES}; not in prefect_aws/observers/ecs.py: {missing}"
    return None


def worker_named_after_its_task(command: str, label: str) -> str | None:
    """The supervisor adds `--name <task ARN>` to the container's `prefect worker start`, and that label is the one
    Prefect's worker writes (prefect/workers/base.py) and recovery reads."""
    from prefect.workers.base import BaseWorker

    arn = "arn:aws:ecs:us-east-1:123456789012:task/c/0123"
    named = supervisor_module().named_after(container()["command"], arn)
    source = inspect.getsource(BaseWorker._give_worker_labels_to_flow_run)
    ok = " ".join(named).endswith(f"--name {arn.replace('/', ':')}") and command in " ".join(named)
    ok = ok and f'"{label}"' in source and "cannot contain '/'" in inspect.getsource(BaseWorker.__init__)
    return None if ok and label == recovery.WORKER_LABEL else f"{named}, {label}"


def queue_name() -> str:
    return queue("queue")["name"]


def stopped_pattern() -> dict[str, Any]:
    return json.loads(inputs("aws:cloudwatch/eventRule:EventRule", "alerts-stopped-tasks")["eventPattern"])["detail"]


# -- scaling (docs/scaling.md) ---------------------------------------------------------------------------------


def idle_backlog(last_end_seconds: float | None = None) -> backlog.Backlog:
    return backlog.Backlog(
        due=0,
        late=0,
        pending=0,
        running=0,
        oldest_late_seconds=0,
        start_delay_p50_seconds=None,
        last_end_seconds=last_end_seconds,
        quiet_seconds=int(controller_env("scaled")["BACKLOG_QUIET_MINUTES"]) * MINUTE,
    )


def idle_publishes() -> str:
    """What the controller publishes for a pool idle beyond its tail, over an hour: "nothing", or the minutes."""
    from test_controller_backlog import Recording

    hour = datetime(2026, 1, 1, tzinfo=UTC)
    published: list[int] = []

    class CloudWatch:
        def put_metric_data(self, **_: Any) -> None:
            published.append(len(published))

    settings = backlog.BacklogSettings.from_environ(controller_env("scaled"))
    for minute in range(60):
        backlog.tick(Recording(), CloudWatch(), settings, hour + timedelta(minutes=minute))
    return "nothing" if not published and not idle_backlog().publish_now else f"{len(published)} times an hour"


def backlog_units() -> dict[str, str]:
    """Each metric the controller publishes for a busy pool, with its unit."""
    busy = dataclasses.replace(idle_backlog(), running=1, start_delay_p50_seconds=5.0)
    data = backlog.metric_data(busy, 1, pool("scaled")["name"], datetime(2026, 1, 1, tzinfo=UTC))
    return {d["MetricName"]: d["Unit"] for d in data}


def metric_rows(names_text: str, unit: str) -> str | None:
    """The metrics of one row of the table are published with that unit and drawn on the dashboard."""
    drawn = dashboard_metrics()
    for name in names(names_text):
        if backlog_units().get(name) != unit:
            return f"{name} is published as {backlog_units().get(name)}"
        if name not in drawn:
            return f"{name} is not on the dashboard ({sorted(drawn)})"
    return None


def dashboard_metrics() -> set[str]:
    body = json.loads(inputs("aws:cloudwatch/dashboard:Dashboard", kind="scaled")["dashboardBody"])
    namespace = alarm("workers-wanted", "scaled")["namespace"]
    return {m[1] for w in body["widgets"] for m in w["properties"]["metrics"] if m[0] == namespace}


def scaling_policy() -> dict[str, Any]:
    return inputs("aws:appautoscaling/policy:Policy", kind="scaled")["stepScalingPolicyConfiguration"]


def exact_steps(adjustment: str) -> str | None:
    """The steps set capacities (small counts exactly, as the scaled run's maxWorkers 2), on a target between min
    and max workers."""
    policy = scaling_policy()
    target = inputs("aws:appautoscaling/target:Target", kind="scaled")
    if policy["adjustmentType"] != adjustment:
        return f"the policy's adjustment type is {policy['adjustmentType']}"
    steps = [(float(s["metricIntervalLowerBound"]), s["scalingAdjustment"]) for s in policy["stepAdjustments"]]
    if any(low != count for low, count in steps) or steps[-1][1] != int(SCALED["maxWorkers"]):
        return f"the steps are {steps}"
    span = (n(target["minCapacity"]), n(target["maxCapacity"]))
    return None if span == (SCALED["minWorkers"], SCALED["maxWorkers"]) else f"the target spans {span}"


def capacity_set(max_workers: int, wanted: int) -> int:
    """What the scaling policy for `max_workers` sets for a WorkersWanted value (the step holding it)."""
    for step in worker_scaling.step_adjustments(max_workers):
        lower, upper = float(step.metric_interval_lower_bound), step.metric_interval_upper_bound
        if lower <= wanted and (upper is None or wanted < float(upper)):
            return int(step.scaling_adjustment)
    raise AssertionError(f"no step holds {wanted} for maxWorkers {max_workers}")


def step_rule(quota: str, exact: str, divisor: str, example: str, example_sets: str) -> str | None:
    """For every allowed maxWorkers: within the quota; each count up to `exact` set exactly; every count rounded up
    by at most n // divisor; and the page's example."""
    for max_workers in range(1, 101):
        if len(worker_scaling.step_adjustments(max_workers)) > int(quota):
            return f"maxWorkers {max_workers} has {len(worker_scaling.step_adjustments(max_workers))} steps"
        for wanted in range(max_workers + 1):
            got = capacity_set(max_workers, wanted)
            most = wanted if wanted <= int(exact) else wanted + wanted // int(divisor)
            if not wanted <= got <= min(most, max_workers):
                return f"maxWorkers {max_workers}: {wanted} wanted sets {got}"
    if capacity_set(100, int(exact) + 1) == int(exact) + 1:
        return f"{int(exact) + 1} has a step of its own too"
    got = capacity_set(100, int(example))
    return None if got == int(example_sets) else f"{example} wanted sets {got}"


def steps_text(max_workers: int) -> str:
    """The step values as the page writes them: "0 to 9, 12, 16, 21 and 25"."""
    values = [int(s.scaling_adjustment) for s in worker_scaling.step_adjustments(max_workers)]
    exact = sum(value == i for i, value in enumerate(values))  # values ascend from 0: the exact ones come first
    parts = [f"0 to {exact - 1}", *map(str, values[exact:])]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def missing_data_keeps_count(state: str) -> str | None:
    spec = alarm("workers-wanted", "scaled")
    if spec.get("treatMissingData") != "missing" or spec.get(f"{state.lower().replace('_d', 'D')}Actions"):
        return f"the scaling alarm treats missing data as {spec.get('treatMissingData')} and acts on {state}"
    return None


def alarm_not_created(min_workers: str, name: str) -> str | None:
    scaled = {a.plain_inputs["name"] for a in run("scaled").of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    default = {a.plain_inputs["name"] for a in run().of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    if SCALED["minWorkers"] != min_workers or not any(a.endswith(f"-{name}") for a in default):
        return f"the scaled run has minWorkers {SCALED['minWorkers']}, or {name} is no alarm of the default stack"
    return None if not any(a.endswith(f"-{name}") for a in scaled) else f"{name} is created at minWorkers 0"


def task_protection_scope(action: str) -> str | None:
    (statement,) = statements("scaling-task-protection", "scaled")
    cluster = run("scaled").one("aws:ecs/cluster:Cluster").outputs["name"]
    if statement["Action"] != action:
        return f"the task role may call {statement['Action']}"
    tasks = f":task/{cluster}/*"
    return None if statement["Resource"].endswith(tasks) else f"on {statement['Resource']}"


def protection_only_when_scaled(key: str, value: str) -> str | None:
    if env("scaled").get(key) != value:
        return f"a scaled worker's {key} is {env('scaled').get(key)}"
    return None if key not in env() else f"a fixed-size worker has {key}={env()[key]}"


def worker_range(low: str, high: str) -> str | None:
    """minWorkers and maxWorkers take `low` to `high` (maxWorkers 0 is a refusal of its own)."""
    lo, hi = int(low), int(high)
    verdicts = {
        "minWorkers": [config_accepts("minWorkers", v) for v in (lo - 1, lo, hi, hi + 1)],
        "maxWorkers": [config_accepts("maxWorkers", v) for v in (hi, hi + 1)],
    }
    wanted = {"minWorkers": [False, True, True, False], "maxWorkers": [True, False]}
    return None if verdicts == wanted else f"accepted: {verdicts}"


def refused(config: dict[str, str], key: str, fix: str) -> str | None:
    """The config is refused naming `key`, with the command that fixes it."""
    error = config_error(config)
    wanted = f"prefect-fargate:{key}:"
    return None if wanted in error and f"Fix: pulumi config {fix} prefect-fargate:" in error else error


def scaling_refusals(_: str) -> str | None:
    return (
        refused({"minWorkers": "3", "maxWorkers": "2"}, "minWorkers", "set")
        or refused({"maxWorkers": "0"}, "maxWorkers", "set")
        or refused({"desiredCount": "2", "minWorkers": "0"}, "desiredCount", "rm")
        or (None if config_error({"desiredCount": "1", "minWorkers": "0"}) == "(accepted)" else "the default refused")
    )


def ecs_pool_workers(most: str) -> str | None:
    ecs = {"workPoolType": "ecs"}
    error = refused({**ecs, "maxWorkers": str(int(most) + 1)}, "maxWorkers", "set")
    accepted = config_error({**ecs, "maxWorkers": most})
    return error or (None if accepted == "(accepted)" else accepted)


def concurrency_workers(limit: str) -> str | None:
    """With workPoolConcurrency C, maxWorkers up to ceil(C / limit) and no more, at the default size's limit."""
    if flag(container()["command"], "--limit") != limit:
        return f"the default --limit is {flag(container()['command'], '--limit')}"
    for c in (1, 4, 10):
        useful = math.ceil(c / int(limit))
        if config_error({"workPoolConcurrency": str(c), "maxWorkers": str(useful)}) != "(accepted)":
            return f"maxWorkers {useful} refused with workPoolConcurrency {c}"
        if refused({"workPoolConcurrency": str(c), "maxWorkers": str(useful + 1)}, "maxWorkers", "set"):
            return f"maxWorkers {useful + 1} accepted with workPoolConcurrency {c}"
    return None


def scaling_of(config: dict[str, str]) -> tuple[int, int]:
    scaling = load_stack_config({**BASE_CONFIG, **config}).scaling
    return scaling.min_workers, scaling.max_workers


def unset_workers(min_default: str) -> str | None:
    """An unset minWorkers is `min_default`; an unset maxWorkers is max(minWorkers, 1)."""
    got = {
        "maxWorkers 3": scaling_of({"maxWorkers": "3"}),
        "minWorkers 0": scaling_of({"minWorkers": "0"}),
        "minWorkers 4": scaling_of({"minWorkers": "4"}),
    }
    wanted = {"maxWorkers 3": (int(min_default), 3), "minWorkers 0": (0, 1), "minWorkers 4": (4, 4)}
    return None if got == wanted else f"the config reads {got}"


def wanted_for(pool_type: str, **counts: int) -> int:
    environ = {**controller_env("scaled"), "WORK_POOL_TYPE": pool_type, "BACKLOG_MAX_WORKERS": "100"}
    settings = backlog.BacklogSettings.from_environ(environ)
    return backlog.workers_wanted(dataclasses.replace(idle_backlog(), **counts), settings)


def process_formula(_: str) -> str | None:
    """A process pool wants ceil((due + Pending + Running) / --limit) workers, at the worker's --limit."""
    limit = int(flag(container("scaled")["command"], "--limit"))
    for due, pending, running in ((1, 0, 0), (limit, 0, 0), (limit, 1, 0), (2, 3, limit * 2 + 1), (0, 0, 9)):
        formula = math.ceil((due + pending + running) / limit)
        got = wanted_for("process", due=due, pending=pending, running=running)
        if got != formula:
            return f"due {due}, Pending {pending}, Running {running}: wants {got}, the formula {formula}"
    return None


def ecs_pool_wants_one(_: str) -> str | None:
    got = [wanted_for("ecs", due=5), wanted_for("ecs", pending=7), wanted_for("ecs", running=9, last_end_seconds=None)]
    return None if got == [1, 1, 1] else f"an ecs pool wants {got}"


def due_filter(field: str) -> str | None:
    """The due count filters SCHEDULED-type runs on `field` up to now + the lead time, and on no other time."""
    from test_controller_backlog import Recording

    environ = {**controller_env("scaled"), "WORK_POOL_TYPE": "process"}
    settings = backlog.BacklogSettings.from_environ(environ)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    prefect = Recording()
    backlog.read_backlog(prefect, settings, now)
    bodies = [body for _, _, body in prefect.requests]
    (due,) = [  # the count (the oldest waiting run is a filter with the same state, sorted)
        b["flow_runs"]
        for b in bodies
        if b["flow_runs"].get("state") == {"type": {"any_": ["SCHEDULED"]}} and "sort" not in b
    ]
    wanted = {"state": due["state"], field: {"before_": (now + settings.lead).isoformat()}}
    return None if due == wanted else f"the due count filters {due}"


# What the Lambda service itself does with the controller's role, from outside the function's subnets: it ships
# the function's logs and attaches its network interfaces (Lambda developer guide, execution role permissions).
LAMBDA_ITSELF = {"logs", "ec2"}


def vpc_endpoints(credential: str, metrics: str, ecs: str, notices: str, logs: str) -> str | None:
    """The endpoints an in-VPC controller needs are those of the services its role lets the function's own code
    call (botocore's endpoint prefix for each, e.g. CloudWatch's `monitoring`); KMS is called by Secrets Manager
    or SNS (kms:ViaService), the rest by Lambda itself; `ecs` on either pool (a process pool's worker tasks name its
    runs); SNS only with the alert topic."""
    import botocore.session

    session = botocore.session.get_session()

    def services(kind: str) -> list[tuple[str, dict[str, Any]]]:
        """(IAM service prefix, statement) for each action of the controller's role."""
        return [
            (action.split(":")[0], statement)
            for statement in statements("controller-policy", kind)
            for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        ]

    def called(kind: str) -> set[str]:
        return {
            session.get_service_model(service).endpoint_prefix
            for service, statement in services(kind)
            if service not in LAMBDA_ITSELF and "kms:ViaService" not in json.dumps(statement.get("Condition", {}))
        }

    on_ecs, on_process, no_alarms = called("controller-in-vpc"), called("default"), called("no-alarms")
    if on_ecs != {credential, metrics, ecs, notices} or on_process != {credential, metrics, ecs, notices}:
        return f"the function calls {sorted(on_ecs)} on an ecs pool, {sorted(on_process)} on a process pool"
    if no_alarms != {credential, metrics, ecs}:
        return f"with alarms false the function calls {sorted(no_alarms)}"
    own_logs = {service for service, _ in services("default")}
    return None if logs in own_logs & LAMBDA_ITSELF else f"{logs} is not what Lambda does for the function"


def late_age_from_next_start(_: str) -> str | None:
    """OldestLateRunAge is now minus the oldest Late run's next scheduled start, whatever its first expected one."""
    late = {
        "next_scheduled_start_time": "2026-01-01T00:40:00+00:00",
        "expected_start_time": "2025-12-31T22:00:00+00:00",
    }

    from test_controller_backlog import Recording

    one_late_run = Recording({("/flow_runs/filter", "NEXT_SCHEDULED_START_TIME_ASC"): [late]})
    settings = backlog.BacklogSettings.from_environ({**controller_env("scaled"), "WORK_POOL_TYPE": "process"})
    age = backlog.read_backlog(one_late_run, settings, datetime(2026, 1, 1, 1, tzinfo=UTC)).oldest_late_seconds
    return None if age == 20 * MINUTE else f"the oldest Late run is {age} s old"


def waiting_runs_by_type(name: str) -> str | None:
    """The oldest waiting run is read by state type (SCHEDULED: Scheduled, Late, AwaitingRetry, ...) and next
    scheduled start, not by the name Late, so a handed-back run (`name`) that no worker takes is aged too."""
    from test_controller_backlog import Recording

    settings = backlog.BacklogSettings.from_environ({**controller_env("scaled"), "WORK_POOL_TYPE": "process"})
    now = datetime(2026, 1, 1, 1, tzinfo=UTC)
    prefect = Recording()
    backlog.read_backlog(prefect, settings, now)
    asked = [body for _, _, body in prefect.requests]
    wanted = {"state": {"type": {"any_": ["SCHEDULED"]}}, "next_scheduled_start_time": {"before_": now.isoformat()}}
    oldest = [b["flow_runs"] for b in asked if b.get("sort") == "NEXT_SCHEDULED_START_TIME_ASC"]
    ok = name == "AwaitingRetry" and oldest == [wanted]
    return None if ok else f"the oldest waiting run is read with {oldest} ({name})"


def dashboard_titles(*titles: str) -> str | None:
    """The widgets, in order, start with the titles the page lists."""
    body = json.loads(inputs("aws:cloudwatch/dashboard:Dashboard", kind="scaled")["dashboardBody"])
    drawn = [w["properties"]["title"] for w in body["widgets"]]
    ok = len(drawn) == len(titles) and all(d.startswith(t) for d, t in zip(drawn, titles, strict=True))
    return None if ok else f"the dashboard draws {drawn}"


def not_running_only_above_zero(_: str) -> str | None:
    """worker-not-running exists with desiredCount 1 and with minWorkers 1, not with desiredCount or minWorkers 0."""
    has = {
        kind: any(
            a.name.endswith("-worker-not-running") for a in run(kind).of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        )
        for kind in ("default", "scaled-from-one", "no-workers", "scaled")
    }
    wanted = {"default": True, "scaled-from-one": True, "no-workers": False, "scaled": False}
    return None if has == wanted else f"the alarm exists: {has}"


def no_worker_notice_only_above_zero(_: str) -> str | None:
    """The "no worker" notification exists at desiredCount 1 and minWorkers 1, not at desiredCount or minWorkers 0."""
    has = {
        kind: any("has no worker" in a.plain_inputs["name"] for a in run(kind).of_type(AUTOMATION_TYPE))
        for kind in ("ecs", "notify-scaled-from-one", "notify-no-workers", "notify-scaled")  # ecs: desiredCount 1
    }
    wanted = {"ecs": True, "notify-scaled-from-one": True, "notify-no-workers": False, "notify-scaled": False}
    return None if has == wanted else f"the notification exists: {has}"


def dev_requirements_include_the_programs(_: str) -> str | None:
    """requirements-dev.txt's first requirement line is `-r requirements.txt`: the tests' env holds the program's."""
    lines = [line for line in (ROOT / "requirements-dev.txt").read_text().splitlines() if line and line[0] != "#"]
    return None if lines[0] == "-r requirements.txt" else f"requirements-dev.txt starts with {lines[0]!r}"


def supported_pythons(low: str, high: str) -> str | None:
    """pyproject's requires-python admits 3.<low> to 3.<high> and no other minor version around them."""
    import tomllib

    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    lo, hi = int(low.split(".")[1]), int(high.split(".")[1])
    admitted = {minor for minor in range(lo - 2, hi + 3) if f"3.{minor}.0" in spec}
    return None if admitted == set(range(lo, hi + 1)) else f"requires-python {spec} admits 3.{sorted(admitted)}"


def prompted(*_: str) -> str | None:
    """`pulumi new` asks for the work pool's name and minWorkers (Pulumi.yaml's `template:`)."""
    prompts = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["template"]["config"]
    missing = {key for key in ("workPool", "minWorkers") if f"{PROJECT}:{key}" not in prompts}
    return None if not missing else f"not prompted: {missing}"


def keys_table_is_the_known_keys(_: str) -> str | None:
    """The first column of docs/configuration.md's Keys table names exactly the keys the program reads."""
    section = (ROOT / "docs" / "configuration.md").read_text().split("## Keys", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| `")]
    listed = {key for cell in rows for key in re.findall(r"`(\w+)`", cell)}
    load_stack_config(BASE_CONFIG)
    known = known_keys()
    return None if listed == known else f"listed, not read: {listed - known}; read, not listed: {known - listed}"


def unread_key_line(line: str) -> str | None:
    error = config_error({"minWorker": "0"})
    return None if f"- {line}\n" in f"{error}\n" else f"the program says: {error}"


def regions_meant(*groups: str) -> str | None:
    *typed, meant = groups
    fixes = {name: f"Fix: pulumi config set aws:region {meant}" in config_error({"aws:region": name}) for name in typed}
    return None if all(fixes.values()) else f"fix given: {fixes}"


def priced_lines(here: str, elsewhere: str) -> str | None:
    from devtools.check_config import priced_region

    said = (priced_region("us-east-1"), priced_region("eu-central-1"))
    return None if said[0] == here and said[1].startswith(elsewhere) else f"check_config says {said}"


def spot_runs_both(_: str) -> str | None:
    """FARGATE_SPOT (worker and `ecs` flow runs) is accepted with either cpuArchitecture."""
    spot = {"workPoolType": "ecs", "workerCapacity": "FARGATE_SPOT", "flowRunCapacity": "FARGATE_SPOT"}
    said = {arch: config_error({**spot, "cpuArchitecture": arch}) for arch in ("X86_64", "ARM64")}
    return None if set(said.values()) == {"(accepted)"} else f"refused: {said}"


FACTS: dict[str, Fact | Rule] = {
    # README.md
    "secret recovery window": Fact(
        "README.md",
        r"recoverable for (\d+) days",
        lambda: n(inputs("aws:secretsmanager/secret:Secret")["recoveryWindowInDays"]),
    ),
    "images kept (cost)": Fact(
        "README.md",
        r"up to (\d+) images",
        lambda: kept_images(0),
    ),
    "default alarms (cost)": Fact(
        "README.md", r"on by default\): (\d+) \u00d7 \$0\.10", lambda: str(alarm_count("default"))
    ),
    "default size (cost)": Fact(
        "README.md", r"worker task, ([\d.]+) vCPU \+ (\d+) GB", lambda: (cpu_vcpu(), memory_gb())
    ),
    "dev stack region": Fact(
        "README.md",
        r"Pulumi\.dev\.yaml already holds the region \(([\w-]+)\)",
        lambda: yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["aws:region"],
    ),
    "default pool name": Fact("README.md", r"the work pool `([\w-]+)` shows a worker online", lambda: pool()["name"]),
    "python versions": Rule(
        "README.md", r"Python (3\.\d+), (3\.\d+) or (3\.\d+) for the Pulumi program", python_versions
    ),
    # docs/how-it-works.md
    "images kept": Fact(
        "docs/how-it-works.md",
        r"keeps the newest (\d+) images it built, and images pushed by hand while among the newest (\d+)\)",
        lambda: (kept_images(0), kept_images(1)),
    ),
    "old flow code expires": Fact(
        "docs/how-it-works.md",
        r"old versions expire after (\d+) days",
        lambda: n(
            inputs("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["rules"][0][
                "noncurrentVersionExpiration"
            ]["noncurrentDays"]
        ),
    ),
    "task role trust conditions": Fact(
        "docs/how-it-works.md",
        r"the task role only by tasks of this account \(`([\w:]+)`, `([\w:]+)`",
        trust_condition_keys,
    ),
    "pool without a worker (component)": Fact(
        "docs/how-it-works.md",
        r"of a pool without a worker for (\d+) minutes",
        lambda: within_minutes("pool-not-ready", "ecs"),
    ),
    "worker command": Fact(
        "docs/how-it-works.md", r"``` (python \S+worker_supervisor\.py .*?) ```", worker_command_text
    ),
    "ecs worker command": Fact(
        "docs/how-it-works.md",
        r"An `ecs` worker runs the same `(prefect worker start) \.\.\. --type (\w+)` without the supervisor"
        r" and `--limit`",
        lambda: (
            (" ".join(container("ecs")["command"][:3]), flag(container("ecs")["command"], "--type"))
            if "--limit" not in container("ecs")["command"]
            else ("with --limit", "")
        ),
    ),
    "worker environment": Fact(
        "docs/how-it-works.md",
        r"`(\w+)` and `(\w+)` are in its environment and `(\w+)` comes from Secrets Manager",
        lambda: (
            "PREFECT_API_URL" if "PREFECT_API_URL" in env() else "",
            "PREFECT_LOGGING_LEVEL" if "PREFECT_LOGGING_LEVEL" in env() else "",
            container()["secrets"][0]["name"],
        ),
    ),
    "health check URL": Fact(
        "docs/how-it-works.md",
        r"runs `python` against `(http://[^`]+)`",
        lambda: re.search(r"http://[^']+", container()["healthCheck"]["command"][-1])[0],
    ),
    "health check timings": Fact(
        "docs/how-it-works.md",
        r"runs it every (\d+) s and gives it (\d+) s; after (\d+) failures in a row .*? failures in the first (\d+) s",
        lambda: (health("interval"), health("timeout"), health("retries"), health("startPeriod")),
    ),
    # docs/configuration.md
    "default workPool": Fact("docs/configuration.md", r"\| `workPool` \| `([\w-]+)` \|", lambda: pool()["name"]),
    "default pool type, limit, flow-run size": Fact(
        "docs/configuration.md",
        r"\| `workPoolType`, `workPoolConcurrency`, `flowRunCpu`, `flowRunMemory` \| `(\w+)`, (no limit),"
        r" `(\d+)`, `(\d+)` \|",
        lambda: (
            pool()["type"],
            "no limit" if pool().get("concurrency_limit") is None else n(pool()["concurrency_limit"]),
            n(pool_default("cpu")),
            n(pool_default("memory")),
        ),
    ),
    "default cpu, memory": Fact(
        "docs/configuration.md",
        r"\| `cpu`, `memory` \| `(\d+)`, `(\d+)` \|",
        lambda: (
            inputs("aws:ecs/taskDefinition:TaskDefinition")["cpu"],
            inputs("aws:ecs/taskDefinition:TaskDefinition")["memory"],
        ),
    ),
    "default cpuArchitecture": Fact(
        "docs/configuration.md",
        r"\| `cpuArchitecture` \| `(\w+)` \|",
        lambda: inputs("aws:ecs/taskDefinition:TaskDefinition")["runtimePlatform"]["cpuArchitecture"],
    ),
    "default desiredCount": Fact(
        "docs/configuration.md",
        r"\| `desiredCount` \| `(\d+)` \|",
        lambda: n(inputs("aws:ecs/service:Service")["desiredCount"]),
    ),
    "desiredCount range": Rule(
        "docs/configuration.md", r"number of worker tasks \((\d+) to (\d+);", bounds("desiredCount")
    ),
    "default logRetentionDays": Fact(
        "docs/configuration.md",
        r"\| `logRetentionDays` \| `(\d+)` \|",
        lambda: n(inputs("aws:cloudwatch/logGroup:LogGroup", "worker-logs")["retentionInDays"]),
    ),
    "logRetentionDays values": Fact(
        "docs/configuration.md",
        r"only values CloudWatch accepts \(([\d, ]+), \.\.\. (\d+)\)",
        lambda: (", ".join(map(str, LOG_RETENTION_DAYS[:8])), str(LOG_RETENTION_DAYS[-1])),
    ),
    "default logLevel": Fact(
        "docs/configuration.md", r"\| `logLevel` \| `(\w+)` \|", lambda: env()["PREFECT_LOGGING_LEVEL"]
    ),
    "default stuckRunMinutes": Fact(
        "docs/configuration.md",
        r"\| `stuckRunMinutes` \| `(\d+)` \|",
        lambda: n(int(controller_env()["STUCK_SECONDS"]) / MINUTE),
    ),
    "stuckRunMinutes range": Rule(
        "docs/configuration.md", r"this long \((\d+) to (\d+)\) is handed back", bounds("stuckRunMinutes")
    ),
    "default assignPublicIp": Fact(
        "docs/configuration.md",
        r"\| `assignPublicIp` \| `(\w+)` \|",
        lambda: str(inputs("aws:ecs/service:Service")["networkConfiguration"]["assignPublicIp"]).lower(),
    ),
    "default alarms": Fact(
        "docs/configuration.md", r"\| `alarms` \| `(\w+)` \|", lambda: str(alarm_count("default") > 0).lower()
    ),
    "default workerCapacity": Fact(
        "docs/configuration.md",
        r"\| `workerCapacity` \| `(\w+)` \|",
        lambda: inputs("aws:ecs/service:Service")["launchType"],
    ),
    "default flowRunCapacity": Fact(
        "docs/configuration.md", r"\| `flowRunCapacity` \| `(\w+)` \|", lambda: pool_default("launch_type")
    ),
    "notify block: pool without a worker": Fact(
        "docs/configuration.md",
        r"when the pool has no worker for (\d+) minutes",
        lambda: within_minutes("pool-not-ready", "ecs"),
    ),
    "invalid size message": Rule(
        "docs/configuration.md",
        r"``` (prefect-fargate:memory: .*?) \.\.\. (Fix: .*?) ```",
        lambda head, fix: (
            None
            if head in (e := config_error({"cpu": "1024", "memory": "1024"})) and fix in e
            else f"load_config says {e!r}"
        ),
    ),
    "refused key": Rule(
        "docs/configuration.md", r"the Prefect API refused the (API key) \(HTTP 401\)", refused_credential
    ),
    "refused auth string": Rule(
        "docs/configuration.md", r"the Prefect API refused the (credential) \(HTTP 401\)", refused_credential
    ),
    "stack outputs": Rule(
        "docs/configuration.md",
        r"Stack outputs \(`pulumi stack output`\): (.*?); with `alarms`",
        equal_sets("no-alarms"),
    ),
    "stack outputs with alarms": Rule(
        "docs/configuration.md", r"with `alarms` also (`\w+`)", equal_sets("default", "no-alarms")
    ),
    "stack outputs with ecs": Rule(
        "docs/configuration.md", r"with `workPoolType` `ecs` also (`\w+`)", equal_sets("ecs", "default")
    ),
    "stack outputs with kmsKeyArn": Rule(
        "docs/configuration.md", r"with `kmsKeyArn` also (`\w+`)", equal_sets("kms-ecs", "ecs")
    ),
    # docs/runs.md
    "stopTimeout": Fact("docs/runs.md", r"`stopTimeout` \(here (\d+) s", lambda: n(container()["stopTimeout"])),
    "hand-back start": Fact(
        "docs/runs.md",
        r"finishes within (\d+) s \(the deadline minus (\d+) s\)",
        lambda: (
            str(supervisor("--stop-timeout") - supervisor("--hand-back-seconds")),
            str(supervisor("--hand-back-seconds")),
        ),
    ),
    "supervisor deadline is the container's": Fact(
        "docs/runs.md",
        r"SIGKILL of every process left at (\d+) s",
        lambda: (
            n(container()["stopTimeout"])
            if supervisor("--stop-timeout") == container()["stopTimeout"]
            else "supervisor and stopTimeout differ"
        ),
    ),
    "hand-back at": Fact(
        "docs/runs.md",
        r"At (\d+) s every run still running",
        lambda: str(supervisor("--stop-timeout") - supervisor("--hand-back-seconds")),
    ),
    "hand-back calls": Fact(
        "docs/runs.md",
        r"handed back at once \((\d+) calls at a\s+time\), with Prefect's client retries off, a (\d+) s timeout"
        r"\s+per call and\s+every call cut off (\d+) s\s+before the deadline",
        lambda: (
            str(supervisor_module().HAND_BACK_CONCURRENCY),
            n(supervisor_module().CALL_TIMEOUT_SECONDS),
            n(supervisor_module().EXIT_MARGIN_SECONDS),
        ),
    ),
    "hand-back window": Fact(
        "docs/runs.md", r"unreachable during the last (\d+) s", lambda: str(supervisor("--hand-back-seconds"))
    ),
    "memory left free by --limit": Rule(
        "docs/runs.md", r"within the (\d+)% of the task's memory left free by `--limit`", memory_left_free
    ),
    "controller silence": Fact(
        "docs/runs.md",
        r"it sent no heartbeat for (\d+) s \((\w+) missed beats: the stack's flow runs beat every (\d+) s, "
        r"`PREFECT_FLOWS_HEARTBEAT_FREQUENCY=(\d+)`\) \*\*while other runs of the pool were heard\*\* in those (\d+) s",
        lambda: (
            controller_env()["SILENCE_SECONDS"],
            WORDS[int(controller_env()["SILENCE_SECONDS"]) // int(env()["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])],
            env()["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"],
            env()["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"],
            controller_env()["SILENCE_SECONDS"],
        ),
    ),
    "controller fallback bound": Rule(
        "docs/runs.md",
        r"(\d+) s \+ up to (\d+) s \+ the run itself: \*\*under (\d+) minutes\*\* after the last heartbeat",
        lambda silence, schedule, minutes: controller_bound(int(silence), int(schedule), int(minutes)),
    ),
    "controller task bound": Rule(
        "docs/runs.md",
        r"up to (\d+) s \+ the controller's run \(at most its \d+ s timeout\): \*\*under (\d+) minutes\*\* after ECS",
        lambda schedule, minutes: controller_bound(0, int(schedule), int(minutes)),
    ),
    "controller task bound (stop list)": Rule(
        "docs/runs.md",
        r"finds them within (\d+) minutes of ECS reporting the task STOPPED",
        lambda minutes: controller_bound(0, 60, int(minutes)),
    ),
    "controller message": Rule(
        "docs/runs.md",
        r"\(\"(The ECS task of its worker <task ARN> stopped while the run was RUNNING; no retries left "
        r"\(1 attempt\(s\), retries=0\) \(prefect-fargate controller\)\.)\"\)",
        lambda message: recovery_says(message, "dead"),
    ),
    "controller heard nothing": Rule(
        "docs/runs.md",
        r"logs `(no heartbeat from any of the pool's N RUNNING run\(s\) in (\d+) s: heartbeat events are not reaching "
        r"Prefect) \.\.\.`",
        lambda message, silence: (
            recovery_says(message, "unheard")
            or (None if silence == controller_env()["SILENCE_SECONDS"] else f"the silence is {controller_env()}")
        ),
    ),
    "heartbeat at Prefect's default": Rule(
        "docs/runs.md",
        r"The stack beats at Prefect's default, (\d+) s \(not its (\d+) s minimum\): one event per run every (\d+) "
        r"minutes, a (\w+) of what \d+ s sent",
        heartbeat_choice,
    ),
    "never-started cap": Rule(
        "docs/runs.md",
        r"\*\*whatever their `retries`\*\*, at most (\d+) times, then marked CRASHED",
        lambda cap: None if int(cap) == recovery.HAND_BACK_CAP else f"the cap is {recovery.HAND_BACK_CAP}",
    ),
    "never-started message": Rule(
        "docs/runs.md",
        r"\(\"\.\.\.; (it never started in (\d+) submissions, after (\d+) hand-backs: crashed \(prefect-fargate\s+"
        r"controller\)\.)\"\)",
        lambda message, submissions, cap: (
            recovery_says(message, "never started")
            or (
                None
                if int(submissions) == int(cap) + 1 == recovery.HAND_BACK_CAP + 1
                else "4 submissions, 3 hand-backs"
            )
        ),
    ),
    "never-started cap (configuration)": Rule(
        "docs/configuration.md",
        r"whatever its flow's retries, at most (\d+) times, then marked Crashed",
        lambda cap: None if int(cap) == recovery.HAND_BACK_CAP else f"the cap is {recovery.HAND_BACK_CAP}",
    ),
    "crash lookback": Fact(
        "docs/runs.md",
        r"whose CRASHED state is younger than (\d+) minutes",
        lambda: n(recovery.CRASH_LOOKBACK.total_seconds() / MINUTE),
    ),
    "observer messages": Rule(
        "docs/runs.md",
        r"\(\"(The following containers stopped with a non-zero exit code: )\.\.\.\", "
        r"\"(ECS task failed to start: )\.\.\.\"\)",
        observer_messages,
    ),
    "retryCrashedRuns on by default": Fact(
        "docs/runs.md",
        r"\(`retryCrashedRuns`, (on|off) by default\)",
        lambda: {"true": "on", "false": "off"}[controller_env("ecs")["RETRY_CRASHED_RUNS"]],
    ),
    "retryCrashedRuns default": Fact(
        "docs/configuration.md",
        r"\| `retryCrashedRuns` \| `(\w+)` \|",
        lambda: controller_env("ecs")["RETRY_CRASHED_RUNS"],
    ),
    "retryCrashedRuns off": Rule(
        "docs/runs.md",
        r"`pulumi config set prefect-fargate:retryCrashedRuns (false)` keeps such runs CRASHED",
        lambda value: (
            None
            if run_program({**ECS, "retryCrashedRuns": value})
            .one("aws:lambda/function:Function", "controller")
            .plain_inputs["environment"]["variables"]["RETRY_CRASHED_RUNS"]
            == "false"
            else "not turned off"
        ),
    ),
    "worker label and name": Rule(
        "docs/runs.md",
        r"starts `(prefect worker start) --name <task ARN>`, each `/` written `:` as Prefect refuses `/` in a worker "
        r"name\), and Prefect's worker labels each run it submits with its name \(`([\w.]+)`\)",
        worker_named_after_its_task,
    ),
    "controller page size": Fact(
        "docs/runs.md",
        r"`PREFECT_SERVER_API_DEFAULT_LIMIT` is lower than (\d+) is paged at its own limit",
        lambda: str(prefect_rest.PAGE),
    ),
    "controller deadline margin": Fact(
        "docs/runs.md",
        r"cut to the time the invocation has left, less (\d+) s",
        lambda: n(handler.DEADLINE_MARGIN_SECONDS),
    ),
    "controller timeout": Fact(
        "docs/runs.md",
        r"at most its (\d+) s timeout",
        lambda: n(inputs("aws:lambda/function:Function", "controller")["timeout"]),
    ),
    "controller schedule": Fact(
        "docs/runs.md",
        r"\| up to (\d+) s \+ the controller's run",
        lambda: (
            re.fullmatch(
                r"rate\(1 minute\)", inputs("aws:cloudwatch/eventRule:EventRule", "controller")["scheduleExpression"]
            )
            and "60"
        ),
    ),
    "controller memory": Fact(
        "docs/runs.md",
        r"at (\d+) MB and about 1 s",
        lambda: n(inputs("aws:lambda/function:Function", "controller")["memorySize"]),
    ),
    "stuck default": Fact(
        "docs/runs.md",
        r"`stuckRunMinutes` \(default (\d+)\)",
        lambda: n(int(controller_env()["STUCK_SECONDS"]) / MINUTE),
    ),
    "stuck backstop": Fact(
        "docs/runs.md",
        r"still Pending (\d+) minutes after `stuckRunMinutes`",
        lambda: n(float(within_minutes("stuck-runs")) - int(controller_env()["STUCK_SECONDS"]) / MINUTE),
    ),
    "automation names": Fact(
        "docs/runs.md",
        r"Its name\s+starts with `([^`]+)`",
        lambda: placeholders(automation("stuck-runs")["name"].split(":")[0] + ":", **MARK_PARTS),
    ),
    # docs/flows.md
    "base image": Fact(
        "docs/flows.md",
        r"the worker image's base \(`([^`]+)`\)",
        lambda: re.search(r"^FROM (\S+)", (ROOT / "agent_image/Dockerfile").read_text(), re.M)[1].replace(
            "${PREFECT_VERSION}", "<version>"
        ),
    ),
    "images kept (per-deployment image)": Fact(
        "docs/flows.md",
        r"The repository keeps its newest (\d+) images, so an image pushed once by hand expires after (\w+) more"
        r" \(it never expires one of the stack's own builds,\s+whose tags start with `([\w-]+)`.*? of which the"
        r"\s+newest (\d+) are kept\)",
        lambda: (kept_images(1), WORDS[int(kept_images(1))], build_tag_prefix(), kept_images(0)),
    ),
    # docs/worker-image.md
    "image tag": Fact(
        "docs/worker-image.md",
        r"tags the image it builds `([^`]+)`",
        lambda: re.sub(
            r"-[0-9a-f]{16,}$",
            "-<hash>",
            inputs("docker:index/image:Image")["imageName"]
            .rsplit(":", 1)[1]
            .replace(pinned_version("prefect"), "<version>"),
        ),
    ),
    "images kept (tag reuse)": Fact(
        "docs/worker-image.md",
        r"within the newest (\d+) images it built",
        lambda: kept_images(0),
    ),
    "cross-account pull actions": Rule(
        "docs/worker-image.md",
        r'"Action": \["(ecr:\w+)", "(ecr:\w+)", "(ecr:\w+)"\]',
        lambda *actions: (
            None if sorted(actions) == ecr_pull_actions() else f"the execution role pulls with {ecr_pull_actions()}"
        ),
    ),
    "token on *": Fact("docs/worker-image.md", r"`ecr:GetAuthorizationToken` stays on `(\*)`", token_resource),
    # docs/sizing.md
    "query seconds": Fact(
        "docs/sizing.md",
        r"polls every (\d+) s \(`PREFECT_WORKER_QUERY_SECONDS=(\d+)`\)",
        lambda: (env()["PREFECT_WORKER_QUERY_SECONDS"],) * 2,
    ),
    "startPeriod": Fact("docs/sizing.md", r"`startPeriod` is (\d+) s", lambda: health("startPeriod")),
    "default size": Fact(
        "docs/sizing.md",
        r"The default stays \*\*([\d.]+) vCPU and (\d+) MiB\*\* \(`cpu (\d+)`, `memory (\d+)`",
        lambda: (
            cpu_vcpu(),
            inputs("aws:ecs/taskDefinition:TaskDefinition")["memory"],
            inputs("aws:ecs/taskDefinition:TaskDefinition")["cpu"],
            inputs("aws:ecs/taskDefinition:TaskDefinition")["memory"],
        ),
    ),
    "default --limit": Fact(
        "docs/sizing.md", r"at its limit of (\d+) runs", lambda: flag(container()["command"], "--limit")
    ),
    "limit formula": Rule(
        "docs/sizing.md",
        r"(\d+)% of the memory, minus (\d+) MiB for the worker, divided by (\d+) MiB per run",
        limit_formula,
    ),
    "limits per size": Rule(
        "docs/sizing.md", r"That gives \*\*([\d, ]+)\*\* concurrent runs at ([\d, ]+) MiB", limits_at
    ),
    "bigger size's limit": Rule("docs/sizing.md", r"use `cpu \d+` / `memory (\d+)` \(limit (\d+)", limit_for),
    # docs/ecs-pools.md
    "flow-run size defaults": Fact(
        "docs/ecs-pools.md",
        r"\| `flowRunCpu`, `flowRunMemory` \| `(\d+)`, `(\d+)` \|",
        lambda: (n(pool_default("cpu")), n(pool_default("memory"))),
    ),
    "flow-run size defaults (example)": Fact(
        "docs/ecs-pools.md", r"\(default (\d+) / (\d+)\)", lambda: (n(pool_default("cpu")), n(pool_default("memory")))
    ),
    "pool description": Fact(
        "docs/ecs-pools.md",
        r"\"(Managed by Pulumi stack\s+[\w/@-]+ \([\w-]+\)) \.\.\.\"",
        lambda: pool()["description"].split(":")[0].replace(f"/{STACK}@", "/dev@").replace(ORGANIZATION, "acme"),
    ),
    "another stack's pool": Rule(
        "docs/ecs-pools.md",
        r"`Prefect work pool '([\w-]+)': creating it at <url> failed: this pool belongs to Pulumi stack"
        r" ([\w/@-]+), not ([\w/@-]+), (.*?)`\.",
        lambda name, owner, mine, rest: another_stacks_pool(
            name, owner, mine, f"this pool belongs to Pulumi stack {owner}, not {mine}, {rest}"
        ),
    ),
    "flow-run family": Fact(
        "docs/ecs-pools.md",
        r"sets the `family` variable to `([^`]+)`",
        lambda: placeholders(pool_default("family"), project=PROJECT, stack=STACK),
    ),
    "task definition family": Fact(
        "docs/ecs-pools.md",
        r"names the task definition's family `([^`]+)`",
        lambda: (
            json.loads(pool("ecs")["base_job_template"])["job_configuration"]["task_definition"]["family"]
            .replace("{{ ", "<")
            .replace(" }}", ">")
        ),
    ),
    "latest revision matched": Fact(
        "docs/ecs-pools.md",
        r"and turns on `(match_latest_revision_in_family)`",
        lambda: "match_latest_revision_in_family" if pool_default("match_latest_revision_in_family") is True else "off",
    ),
    "IAM family scope": Fact(
        "docs/ecs-pools.md",
        r"only \(`(task-definition/[^`]+)`",
        lambda: placeholders(
            next(
                r
                for s in statements("ecs-pool-worker-policy", "ecs")
                for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
                if ":task-definition/" in r
            ).split(":", 5)[5],
            project=PROJECT,
            stack=STACK,
        ),
    ),
    "ecs heartbeat": Fact(
        "docs/ecs-pools.md",
        r"`PREFECT_FLOWS_HEARTBEAT_FREQUENCY=(\d+)`, as the process worker does",
        lambda: pool_default("env")["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"],
    ),
    "flow-run log prefix": Fact(
        "docs/ecs-pools.md",
        r"under the `([\w-]+)/` prefix",
        lambda: pool_default("cloudwatch_logs_options")["awslogs-stream-prefix"],
    ),
    "spot strategy": Fact(
        "docs/ecs-pools.md",
        r"capacity provider strategy `(\w+)` \(weight (\d+)\)",
        lambda: (spot_strategy()["capacityProvider"], n(spot_strategy()["weight"])),
    ),
    "spot launch type": Fact(
        "docs/ecs-pools.md",
        r"the pool's `launch_type` variable becomes `(\w+)`",
        lambda: pool_default("launch_type", "spot"),
    ),
    "spot sigterm": Fact(
        "docs/ecs-pools.md",
        r"with Spot the pool's environment sets `(\w+)=(\w+)`",
        lambda: next((k, v) for k, v in pool_default("env", "spot").items() if "SIGTERM" in k),
    ),
    "observer queue": Fact(
        "docs/ecs-pools.md",
        r"an SQS queue named from the stack, `([^`]+)`, encrypted with SQS-managed keys, keeping a message (\w+) day",
        lambda: (placeholders(queue_name(), stack=STACK), WORDS[int(queue("queue")["messageRetentionSeconds"] // DAY)]),
    ),
    "observer setting": Fact(
        "docs/ecs-pools.md",
        r"the worker is told its name \(`(\w+)`\)",
        lambda: next(k for k, v in env("ecs").items() if v == queue_name()),
    ),
    "observer rule": Fact(
        "docs/ecs-pools.md",
        r"an EventBridge rule, `([^`]+)`",
        lambda: inputs("aws:cloudwatch/eventRule:EventRule", "ecs-events-rule", "ecs")["name"].replace(
            queue_name(), "<queue>"
        ),
    ),
    "dead-letter queue": Fact(
        "docs/ecs-pools.md",
        r"a dead-letter queue, `([^`]+)`, keeping for (\d+) days an event the observer failed on (\w+) times"
        r" \(a message it did not finish comes back after (\d+) minutes\)",
        lambda: (
            queue("dlq")["name"].replace(queue_name(), "<queue>"),
            n(queue("dlq")["messageRetentionSeconds"] / DAY),
            WORDS[json.loads(queue("queue")["redrivePolicy"])["maxReceiveCount"]],
            n(queue("queue")["visibilityTimeoutSeconds"] / MINUTE),
        ),
    ),
    # docs/alerts.md
    "alarm names": Fact(
        "docs/alerts.md",
        r"Names start with `([^`]+)`",
        lambda: placeholders(alarm("worker-cpu-high")["name"].removesuffix("worker-cpu-high"), stack=STACK),
    ),
    "alarm actions": Rule(
        "docs/alerts.md",
        r"(Each alarm sends once when it fires and once when it is over \(OK)",
        lambda _: every_alarm_notifies_on_alarm_and_ok(),
    ),
    "not running": Fact(
        "docs/alerts.md",
        r"\| `worker-not-running` \| no worker task has run for (\d+) minutes",
        lambda: alarm_minutes("worker-not-running"),
    ),
    "tasks stopping": Fact(
        "docs/alerts.md",
        r"\| `worker-tasks-stopping` \| a worker task stopped unexpectedly in the last (\d+) minutes",
        lambda: alarm_minutes("worker-tasks-stopping"),
    ),
    "out of memory": Fact(
        "docs/alerts.md",
        r"\| `worker-out-of-memory` \| a worker task was killed for memory \(`(\w+)`\) in the last (\d+) minutes",
        lambda: (
            inputs("aws:cloudwatch/logMetricFilter:LogMetricFilter")["pattern"].strip('"'),
            alarm_minutes("worker-out-of-memory"),
        ),
    ),
    "memory high": Fact(
        "docs/alerts.md",
        r"\| `worker-memory-high` \| a worker task used more than (\d+)% of its memory for (\d+) minutes",
        lambda: (n(alarm("worker-memory-high")["threshold"]), alarm_minutes("worker-memory-high")),
    ),
    "cpu high": Fact(
        "docs/alerts.md",
        r"\| `worker-cpu-high` \| a worker task used more than (\d+)% of its CPU for (\d+) minutes",
        lambda: (n(alarm("worker-cpu-high")["threshold"]), alarm_minutes("worker-cpu-high")),
    ),
    "stopped-task log": Fact(
        "docs/alerts.md",
        r"`aws logs tail (/aws/events/[^ ]+) --since 1h`",
        lambda: placeholders(inputs("aws:cloudwatch/logGroup:LogGroup", "stopped-tasks")["name"], stack=STACK),
    ),
    "not running: no datapoint": Fact(
        "docs/alerts.md",
        r"fires on (\d+) minutes without a CPU datapoint \(missing data counts as (\w+)\)",
        lambda: (alarm_minutes("worker-not-running"), alarm("worker-not-running")["treatMissingData"]),
    ),
    "unexpected stops": Fact(
        "docs/alerts.md",
        r"\(`group` `(\w+:)<service>`\) with `lastStatus` `(\w+)` and stop code `(\w+)` or `(\w+)`, or a"
        r" stopped reason starting with `(\w+ \w+)`",
        lambda: (
            stopped_pattern()["group"][0].split(":")[0] + ":",
            *stopped_pattern()["lastStatus"],
            *stopped_pattern()["$or"][0]["stopCode"],
            stopped_pattern()["$or"][1]["stoppedReason"][0]["prefix"],
        ),
    ),
    "stop log line": Rule("docs/alerts.md", r"e\.g\. `(Worker task .*?)`\. EventBridge", stop_log_line),
    "stop alarms": Fact(
        "docs/alerts.md",
        r"`worker-tasks-stopping` on the rule's `(\w+)` metric, `worker-out-of-memory` on a metric filter"
        r" counting `(\w+)` in that log, each firing on one stop in the last (\d+) minutes"
        r" \((\d+) periods of (\d+) minutes\)",
        lambda: (
            alarm("worker-tasks-stopping")["metricName"],
            inputs("aws:cloudwatch/logMetricFilter:LogMetricFilter")["pattern"].strip('"'),
            alarm_minutes("worker-out-of-memory"),
            n(alarm("worker-tasks-stopping")["evaluationPeriods"]),
            n(alarm("worker-tasks-stopping")["period"] / MINUTE),
        ),
    ),
    "busiest task": Fact(
        "docs/alerts.md",
        r"the `(\w+)` of `([\w/]+)` `(\w+)` and `(\w+)` for this cluster",
        lambda: (
            (
                alarm("worker-memory-high")["statistic"],
                alarm("worker-memory-high")["namespace"],
                alarm("worker-memory-high")["metricName"],
                alarm("worker-cpu-high")["metricName"],
            )
            if alarm("worker-cpu-high")["statistic"] == alarm("worker-memory-high")["statistic"]
            else ()
        ),
    ),
    "dead letters alarm": Fact(
        "docs/alerts.md",
        r"an alarm that the ECS observer's dead-letter queue is not empty \(`([\w-]+)`",
        lambda: alarm("observer-dead-letters", "ecs")["name"].removeprefix(f"{PROJECT}-{STACK}-"),
    ),
    "failed-run notices: which states": Fact(
        "docs/alerts.md",
        r"each flow run of this stack's pool that ends \*\*(\w+)\*\* \(TimedOut included\) or \*\*(\w+)\*\*",
        lambda: tuple(notify.ENDED),
    ),
    "failed-run notices: the sample email": Rule(
        "docs/alerts.md", r"```text (Subject: prefect-fargate-\S+: a flow run of pool .*?) ```", failed_run_sample
    ),
    "failed-run notices: JSON fields": Rule(
        "docs/alerts.md",
        r"gets the same as JSON, with the\s+fields ((?:`\w+`,?\s+)+and `\w+`)",
        notice_fields,
    ),
    "failed-run notices: the topic only": Rule(
        "docs/alerts.md", r"(may `sns:Publish` to this topic only)", lambda _: controller_publishes_to_the_topic_only()
    ),
    "failed-run notices: within": Rule(
        "docs/alerts.md", r"The email arrives within about (\w+) minutes of the run's end", notice_within
    ),
    "failed-run notices: the label": Fact(
        "docs/alerts.md",
        r"labels the run `([^`]+)` with the id of the state it reported",
        lambda: notify.LABEL,
    ),
    "failed-run notices: the lookback": Fact(
        "docs/alerts.md",
        r"Runs that ended within the last (\d+) hours are read every minute.*? the pool's failures of the last (\d+)"
        r" hours are sent once",
        lambda: (n(notify.LOOKBACK.total_seconds() / 3600),) * 2,
    ),
    "failed-run notices: the pace": Fact(
        "docs/alerts.md",
        r"Notices are sent at most (\d+) a second",
        lambda: n(1 / notify.PUBLISH_INTERVAL),
    ),
    "controller's jobs (runs)": Rule(
        "docs/runs.md",
        r"It has three jobs each minute, in this order: (the pool's backlog), which scaling follows .*?; (recovery),"
        r" below; and, with `alarms` on, the \[failed-run (notices)\]",
        controller_jobs,
    ),
    "the notices' label (runs)": Fact(
        "docs/runs.md",
        r"marking it with the flow-run label `([^`]+)` \(the id of the state reported; a label changes no state\)",
        lambda: notify.LABEL,
    ),
    "notification names": Fact(
        "docs/alerts.md",
        r"named `([^`]+: notify when) \.\.\.`",
        lambda: placeholders(automation("failed-runs", "ecs")["name"].split(" a flow run")[0], **MARK_PARTS),
    ),
    "failed-run notification": Fact(
        "docs/alerts.md",
        r"\| `(notify when a flow run of <pool> fails or crashes)` \| a run of this pool enters a state of"
        r" type (\w+) \(TimedOut included\) or (\w+) .*? \| `([^`]+)`",
        lambda: (
            automation("failed-runs", "ecs")["name"].split(": ", 1)[1].replace(pool("ecs")["name"], "<pool>"),
            *automation("failed-runs", "ecs")["trigger"]["match"]["prefect.state-type"],
            automation("failed-runs", "ecs")["actions"][0]["subject"]
            .replace("{{ flow_run.name }}", "<run>")
            .replace("{{ flow_run.state.name }}", "<state>"),
        ),
    ),
    "pool-not-ready notification": Fact(
        "docs/alerts.md",
        r"\| `(notify when work pool <pool> has no worker)` \(made only [^)]*\) \| the pool stays Not Ready for (\d+) "
        r"minutes.*?"
        r" \| `([^`]+)`",
        lambda: (
            automation("pool-not-ready", "ecs")["name"].split(": ", 1)[1].replace(pool("ecs")["name"], "<pool>"),
            within_minutes("pool-not-ready", "ecs"),
            automation("pool-not-ready", "ecs")["actions"][0]["subject"].replace(pool("ecs")["name"], "<pool>"),
        ),
    ),
    "alarm count (cost)": Fact(
        "docs/alerts.md",
        r"\| (\d+) standard-resolution alarms, .*?; a (\w+) with the `ecs` observer's queue",
        lambda: (str(alarm_count("default")), ORDINALS[alarm_count("ecs")]),
    ),
    "topic key": Fact(
        "docs/alerts.md",
        r"the topic is encrypted with AWS's `([^`]+)` key",
        lambda: inputs("aws:sns/topic:Topic")["kmsMasterKeyId"],
    ),
    "topic key (cost)": Fact(
        "docs/alerts.md",
        r"the topic's encryption: AWS's `([^`]+)` key, free",
        lambda: inputs("aws:sns/topic:Topic")["kmsMasterKeyId"],
    ),
    "no key of the stack's own (security)": Rule(
        "docs/security.md", r"(The stack creates no key of its own)\.", lambda _: no_key_of_its_own()
    ),
    "notifier's JSON for other protocols": Rule(
        "docs/alerts.md",
        r"with the fields ((?:`\w+`,?\s+)+and `\w+`) \(the metric\s+only\)",
        lambda fields: notification_fields(fields),
    ),
    "notifier name": Fact(
        "docs/alerts.md",
        r"a small\s+function of the stack, `([^`]+)`",
        lambda: placeholders(inputs("aws:lambda/function:Function", "notifier")["name"], stack=STACK),
    ),
    "notifier retries": Fact(
        "docs/alerts.md",
        r"Lambda retries\s+a failed invocation (\w+), and then sends the alarm's event itself to the same topic",
        lambda: (
            {0: "never", 1: "once", 2: "twice"}.get(int(inputs(*NOTIFIER_INVOKE)["maximumRetryAttempts"]), "more")
            if inputs(*NOTIFIER_INVOKE)["destinationConfig"]["onFailure"]["destination"]
            == run().one("aws:sns/topic:Topic").outputs["arn"]
            else "no destination"
        ),
    ),
    "notifier invokers": Fact(
        "docs/alerts.md",
        r"one Lambda permission per alarm, principal\s+`([\w.]+)`",
        lambda: notifier_invoker(),
    ),
    "OOM metric": Fact(
        "docs/alerts.md",
        r"the `(\w+)` custom metric",
        lambda: inputs("aws:cloudwatch/logMetricFilter:LogMetricFilter")["metricTransformation"]["name"],
    ),
    "log resource policies": Fact(
        "docs/alerts.md",
        r"The stack also adds (\w+) CloudWatch Logs resource policy",
        lambda: WORDS[len(run().of_type("aws:cloudwatch/logResourcePolicy:LogResourcePolicy"))],
    ),
    # docs/security.md
    "SQS data key reuse": Rule(
        "docs/security.md",
        r"SQS reuses a data key for (\d+) minutes \(at most about ([\d,]+) requests a month",
        sqs_data_key_requests,
    ),
    # docs/testing.md
    "tested literals": Fact(
        "docs/testing.md",
        r"the health check's (\d+) s / (\d+) s / (\d+) / (\d+) s, (\d+) days for old flow code versions,"
        r" (\d+) days to recover a deleted secret",
        lambda: (
            health("interval"),
            health("timeout"),
            health("retries"),
            health("startPeriod"),
            n(
                inputs("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["rules"][0][
                    "noncurrentVersionExpiration"
                ]["noncurrentDays"]
            ),
            n(inputs("aws:secretsmanager/secret:Secret")["recoveryWindowInDays"]),
        ),
    ),
    "health check timeout (tests)": Fact("docs/testing.md", r"within its (\d+) s timeout", lambda: health("timeout")),
    "never privileged (ecs-pools)": Fact(
        "docs/ecs-pools.md",
        r"registering never a privileged container \(`([\w:]+)`, a String key: `(\w+)` \"(\w+)\"",
        lambda: next(
            (key, operator, value)
            for s in statements("ecs-pool-worker-policy", "ecs")
            if s["Action"] == "ecs:RegisterTaskDefinition"
            for operator, keys in s["Condition"].items()
            for key, value in keys.items()
        ),
    ),
    # docs/runs.md, the stack controller
    "controller never repeats": Fact(
        "docs/runs.md",
        r"each ends within its (\d+) s timeout, before the next (minute)'s starts, and Lambda neither retries a"
        r" failed run \((\d+) retries in the function's event invoke config; .*? nor starts one that waited more"
        r" than (\d+) s",
        lambda: (
            n(inputs("aws:lambda/function:Function", "controller")["timeout"]),
            {"rate(1 minute)": "minute"}.get(
                inputs("aws:cloudwatch/eventRule:EventRule", "controller-schedule")["scheduleExpression"], "?"
            ),
            n(
                inputs("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig", "controller")[
                    "maximumRetryAttempts"
                ]
            ),
            n(
                inputs("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig", "controller")[
                    "maximumEventAgeInSeconds"
                ]
            ),
        ),
    ),
    "controller's minutes never delivered late": Fact(
        "docs/runs.md",
        r"EventBridge drops a minute it could not deliver \((\d+) retries, (\d+) s at most in the\s+schedule target's",
        lambda: (
            n(
                inputs("aws:cloudwatch/eventTarget:EventTarget", "controller-target")["retryPolicy"][
                    "maximumRetryAttempts"
                ]
            ),
            n(
                inputs("aws:cloudwatch/eventTarget:EventTarget", "controller-target")["retryPolicy"][
                    "maximumEventAgeInSeconds"
                ]
            ),
        ),
    ),
    "controller's VPC endpoints": Rule(
        "docs/runs.md",
        r"VPC endpoints for what the function calls: `(\w+)` for its credential, `(\w+)` for CloudWatch's"
        r" PutMetricData and `(\w+)` for DescribeTasks, on either pool type, and `(\w+)` for the failed-run"
        r" notices, with `alarms` on; no\s+`(\w+)` endpoint is needed",
        vpc_endpoints,
    ),
    "rehearsal's quota count": Fact(
        "docs/testing.md", r"checks (\d+) published AWS limits", lambda: (str(len(aws_quotas.quotas())),)
    ),
    "rehearsal's shapes": Fact(
        "docs/testing.md", r"python -m devtools.rehearse +# the (\w+) shapes below", lambda: (WORDS[len(SHAPES)],)
    ),
    # docs/scaling.md
    "scaling off by default": Fact(
        "docs/scaling.md",
        r"one worker task runs all month \(`desiredCount` (\d+)\)",
        lambda: (
            n(inputs("aws:ecs/service:Service")["desiredCount"])
            if not run().of_type("aws:appautoscaling/target:Target")
            else "scaled"
        ),
    ),
    "lateRunMinutes default (example)": Fact(
        "docs/scaling.md",
        r"lateRunMinutes (\d+) # optional: the Late-run alarm's age \(default (\d+)\)",
        lambda: (n(alarm("late-runs", "scaled")["threshold"] / MINUTE),) * 2,
    ),
    "scaleLeadMinutes default (example)": Fact(
        "docs/scaling.md",
        r"scaleLeadMinutes (\d+) # optional: how early a scheduled run counts as due \(default (\d+)\)",
        lambda: (controller_env("scaled")["BACKLOG_LEAD_MINUTES"],) * 2,
    ),
    "lateRunMinutes default": Fact(
        "docs/scaling.md",
        r"\| `lateRunMinutes` \| `(\d+)` \| the `(late-runs)` alarm fires",
        lambda: (
            n(alarm("late-runs", "scaled")["threshold"] / MINUTE),
            alarm("late-runs", "scaled")["name"].removeprefix(f"{PROJECT}-{STACK}-"),
        ),
    ),
    "lateRunMinutes range": Rule(
        "docs/scaling.md", r"oldest Late run is older \((\d+) to (\d+)\)", bounds("lateRunMinutes")
    ),
    "scaleLeadMinutes default": Fact(
        "docs/scaling.md",
        r"\| `scaleLeadMinutes` \| `(\d+)` \|",
        lambda: controller_env("scaled")["BACKLOG_LEAD_MINUTES"],
    ),
    "scaleLeadMinutes range": Rule(
        "docs/scaling.md", r"counts as due \((\d+) to (\d+)\), so a worker", bounds("scaleLeadMinutes")
    ),
    "workers range": Rule("docs/scaling.md", r"values outside (\d+) to (\d+);", worker_range),
    "scaling refusals": Rule(
        "docs/scaling.md",
        r"(`minWorkers` above `maxWorkers`; values outside \d+ to \d+; `maxWorkers 0`; `desiredCount` set to"
        r" anything but its default together with `minWorkers`/`maxWorkers`)",
        scaling_refusals,
    ),
    "ecs pool: one worker": Rule(
        "docs/scaling.md", r"with `workPoolType ecs` more than (\d+) \(the worker only submits", ecs_pool_workers
    ),
    "concurrency: ceil(C / limit)": Rule(
        "docs/scaling.md", r"`--limit` follows its memory, (\d+) for the default 1 GB", concurrency_workers
    ),
    "quiet period": Fact(
        "docs/scaling.md",
        r"and for (\d+) minutes after the pool's last run ended: at least one worker",
        lambda: controller_env("scaled")["BACKLOG_QUIET_MINUTES"],
    ),
    "quiet period (busy)": Fact(
        "docs/scaling.md",
        r"or a run ended in the last (\d+) minutes \(the quiet period\)",
        lambda: controller_env("scaled")["BACKLOG_QUIET_MINUTES"],
    ),
    "scaling alarm": Fact(
        "docs/scaling.md",
        r"One CloudWatch alarm \(`([\w<>-]+)`, `(\w+) (>=) (\d+)`\) is in ALARM whenever a value"
        r" arrived in the last (minute)",
        lambda: (
            placeholders(alarm("workers-wanted", "scaled")["name"], stack=STACK),
            alarm("workers-wanted", "scaled")["metricName"],
            {"GreaterThanOrEqualToThreshold": ">="}.get(alarm("workers-wanted", "scaled")["comparisonOperator"], "?"),
            n(alarm("workers-wanted", "scaled")["threshold"]),
            "minute" if alarm("workers-wanted", "scaled")["period"] == MINUTE else "period",
        ),
    ),
    "exact-capacity steps": Rule("docs/scaling.md", r"steps set that many tasks \(`(\w+)`\)", exact_steps),
    "steps within AWS's quota, rounded up": Rule(
        "docs/scaling.md",
        r"takes at most (\d+) steps per policy, so each count up to (\d+) has a step of its own .*? at most a quarter"
        r" more \(`n \+ n // (\d+)`: (\d+) wanted gives (\d+)\)",
        step_rule,
    ),
    "steps for 25 and 100": Fact(
        "docs/scaling.md",
        r"With `maxWorkers 25` the steps are ([\d, and to]+); with `maxWorkers 100`, ([\d, and to]+) \((\d+) steps\)",
        lambda: (steps_text(25), steps_text(100), str(len(worker_scaling.step_adjustments(100)))),
    ),
    "missing data keeps the count": Rule(
        "docs/scaling.md", r"the alarm goes to (INSUFFICIENT_DATA), which has no action", missing_data_keeps_count
    ),
    "controller alarms (scaling)": Fact(
        "docs/scaling.md",
        r"the controller's own alarms say so: `(controller-errors)` \((\d+) failed minutes of (\d+)\)\s+and"
        r" `(controller-not-running)` \(no run at all for (\d+) minutes, from Lambda's own `(\w+)` metric",
        lambda: (
            alarm("controller-errors", "scaled")["name"].removeprefix(f"{PROJECT}-{STACK}-"),
            n(alarm("controller-errors", "scaled")["datapointsToAlarm"]),
            n(alarm("controller-errors", "scaled")["evaluationPeriods"]),
            alarm("controller-not-running", "scaled")["name"].removeprefix(f"{PROJECT}-{STACK}-"),
            alarm_minutes("controller-not-running", "scaled"),
            alarm("controller-not-running", "scaled")["metricName"],
        ),
    ),
    "task protection endpoint": Fact(
        "docs/scaling.md",
        r"`PUT \$ECS_AGENT_URI(/[\w/-]+)`",
        lambda: task_protection_module().STATE_PATH,
    ),
    "task protection renewal": Fact(
        "docs/scaling.md",
        r"renews it every (\d+) minutes \(it is set for (\d+),",
        lambda: (n(task_protection_module().RENEW_SECONDS / MINUTE), n(task_protection_module().PROTECT_MINUTES)),
    ),
    "task protection renewal (deploys)": Fact(
        "docs/scaling.md",
        r"it stays protected, renewed every (\d+) minutes",
        lambda: n(task_protection_module().RENEW_SECONDS / MINUTE),
    ),
    "task protection permission": Rule(
        "docs/scaling.md", r"may call `(ecs:\w+)` on the cluster's tasks only", task_protection_scope
    ),
    "task protection only when scaled": Rule(
        "docs/scaling.md", r"task definition carries `(\w+)=(\w+)`", protection_only_when_scaled
    ),
    "no worker-not-running at zero": Rule(
        "docs/scaling.md", r"With `minWorkers (\d+)` the `([\w-]+)` alarm is not created", alarm_not_created
    ),
    "alarms at zero (cost)": Fact(
        "docs/scaling.md",
        r"The (\w+) alarms are the scaling alarm \(`([\w-]+)`, the one left with `alarms false`\), (\w+)\s+worker"
        r" alarms \(no `worker-not-running` at `minWorkers 0`",
        lambda: (
            WORDS[alarm_count("scaled")],
            next(
                a.plain_inputs["name"].removeprefix(f"{PROJECT}-{STACK}-")
                for a in run("scaled").of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
                if a.plain_inputs["alarmActions"]
                != [run("scaled").one("aws:lambda/function:Function", "notifier").outputs["arn"]]
            ),
            WORDS[
                sum(
                    "-worker-" in a.plain_inputs["name"]
                    for a in run("scaled").of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
                )
            ],
        ),
    ),
    "metric namespace and dimension": Fact(
        "docs/scaling.md",
        r"Namespace `([^`]+)` \(the stack's own, so the controller's `cloudwatch:PutMetricData` permission is"
        r" conditioned on it\), dimension `(\w+)=<pool>`",
        lambda: (
            placeholders(alarm("workers-wanted", "scaled")["namespace"], stack=STACK),
            *alarm("workers-wanted", "scaled")["dimensions"],
        ),
    ),
    "namespace condition": Fact(
        "docs/scaling.md",
        r"the controller's `(cloudwatch:PutMetricData)` permission is conditioned on it",
        lambda: next(
            s["Action"]
            for s in statements("controller-policy", "scaled")
            if s.get("Condition", {}).get("StringEquals", {}).get("cloudwatch:namespace")
            == alarm("workers-wanted", "scaled")["namespace"]
        ),
    ),
    "metrics and units": Rule("docs/scaling.md", r"\| ((?:`\w+`(?:, )?)+) \| (Count|Seconds) \|", metric_rows),
    "idle publishing": Fact(
        "docs/scaling.md",
        r"every minute while the pool is busy and for (\d+) minutes after; (nothing) while idle",
        lambda: (n(backlog.IDLE_TAIL / timedelta(minutes=1)), idle_publishes()),
    ),
    "idle tail": Fact(
        "docs/scaling.md",
        r"every minute for (\d+) more minutes \(so the drop to\s+`minWorkers` is sent at once\), then (nothing):",
        lambda: (n(backlog.IDLE_TAIL / timedelta(minutes=1)), idle_publishes()),
    ),
    "start delay window": Fact(
        "docs/scaling.md",
        r"over the pool's last (\d+) runs started in the last (hour)",
        lambda: (
            str(backlog.START_DELAY_RUNS),
            "hour" if timedelta(hours=1) == backlog.START_DELAY_WINDOW else str(backlog.START_DELAY_WINDOW),
        ),
    ),
    "late-runs alarm": Fact(
        "docs/scaling.md",
        r"\| `(late-runs)` \| the pool's oldest Late run is (older than) `lateRunMinutes`",
        lambda: (
            alarm("late-runs", "scaled")["name"].removeprefix(f"{PROJECT}-{STACK}-"),
            "older than"
            if (alarm("late-runs", "scaled")["metricName"], alarm("late-runs", "scaled")["comparisonOperator"])
            == ("OldestLateRunAge", "GreaterThanThreshold")
            else "?",
        ),
    ),
    "not-running alarm": Fact(
        "docs/scaling.md",
        r"\| `controller-not-running` \| the stack controller has not run for (\d+) minutes \(no `(\w+)`;",
        lambda: (
            alarm_minutes("controller-not-running", "scaled"),
            alarm("controller-not-running", "scaled")["metricName"],
        ),
    ),
    "errors alarm (scaling)": Fact(
        "docs/scaling.md",
        r"\| `controller-errors` \| the stack controller failed in (\d+) of the last (\d+) minutes"
        r" .*? `(/aws/lambda/[^`]+)`",
        lambda: (
            n(alarm("controller-errors", "scaled")["datapointsToAlarm"]),
            n(alarm("controller-errors", "scaled")["evaluationPeriods"]),
            placeholders(inputs("aws:cloudwatch/logGroup:LogGroup", "controller-logs", "scaled")["name"], stack=STACK),
        ),
    ),
    "unset minWorkers/maxWorkers": Rule(
        "docs/scaling.md", r"an unset `minWorkers` is then (\d+) \(today's always-on worker\)", unset_workers
    ),
    "controller every minute": Fact(
        "docs/scaling.md",
        r"Every (minute) the stack controller",
        lambda: {"rate(1 minute)": "minute"}.get(
            inputs("aws:cloudwatch/eventRule:EventRule", "controller-schedule", "scaled")["scheduleExpression"], "?"
        ),
    ),
    "process pool wants": Rule(
        "docs/scaling.md",
        r"(`process` pool: `ceil\(\(due \+ Pending \+ Running\) / --limit\)` workers)",
        process_formula,
    ),
    "due by next scheduled start": Rule(
        "docs/scaling.md",
        r"next scheduled to start within `scaleLeadMinutes` \(the run's `(\w+)`, which a worker's poll goes by",
        due_filter,
    ),
    "oldest waiting run, whatever its name": Rule(
        "docs/scaling.md",
        r"a run waiting past its next scheduled start counts whatever its state's name \(`(\w+)`: a run handed back",
        waiting_runs_by_type,
    ),
    "oldest Late age": Rule(
        "docs/scaling.md",
        r"how long ago the oldest Late run was due \((its next scheduled start)",
        late_age_from_next_start,
    ),
    "ecs pool wants": Rule(
        "docs/scaling.md", r"(`ecs` pool: one worker while anything is due or Pending)", ecs_pool_wants_one
    ),
    "dashboard widgets": Rule(
        "docs/scaling.md",
        r"1\. \*\*([^*]+):?\*\*.*? 2\. \*\*([^*]+)\*\*.*? 3\. \*\*([^*]+)\*\*.*? 4\. \*\*([^*]+)\*\*.*?"
        r" 5\. \*\*([^*]+)\*\*",
        dashboard_titles,
    ),
    # the scaling settings on other pages
    "lateRunMinutes (configuration)": Fact(
        "docs/configuration.md",
        r"\| `lateRunMinutes` \| `(\d+)` \|",
        lambda: n(alarm("late-runs", "scaled")["threshold"] / MINUTE),
    ),
    "lateRunMinutes range (configuration)": Rule(
        "docs/configuration.md", r"Late run is this old \((\d+) to (\d+)\)", bounds("lateRunMinutes")
    ),
    "scaleLeadMinutes (configuration)": Fact(
        "docs/configuration.md",
        r"\| `scaleLeadMinutes` \| `(\d+)` \|",
        lambda: controller_env("scaled")["BACKLOG_LEAD_MINUTES"],
    ),
    "scaleLeadMinutes range (configuration)": Rule(
        "docs/configuration.md", r"this many minutes \((\d+) to (\d+)\) counts as due", bounds("scaleLeadMinutes")
    ),
    "late-runs default (alerts)": Fact(
        "docs/alerts.md",
        r"older than `lateRunMinutes` \(default (\d+)\)",
        lambda: n(alarm("late-runs", "scaled")["threshold"] / MINUTE),
    ),
    "controller alarms (runs)": Fact(
        "docs/runs.md",
        r"Its alarms,\s+`(controller-errors)` and `(controller-not-running)` \(on Lambda's own, free `(\w+)` and"
        r" `(\w+)`\s+metrics\)",
        lambda: (
            *(
                alarm(a)["name"].removeprefix(f"{PROJECT}-{STACK}-")
                for a in ("controller-errors", "controller-not-running")
            ),
            *(
                alarm(a)["metricName"] if alarm(a)["namespace"] == "AWS/Lambda" else "?"
                for a in ("controller-errors", "controller-not-running")
            ),
        ),
    ),
    "not running (alerts)": Fact(
        "docs/alerts.md",
        r"\| `(controller-not-running)` \| the stack controller has not run for (\d+) minutes \(Lambda's own"
        r" `(\w+)` metric has no datapoint",
        lambda: (
            alarm("controller-not-running")["name"].removeprefix(f"{PROJECT}-{STACK}-"),
            alarm_minutes("controller-not-running"),
            alarm("controller-not-running")["metricName"]
            if alarm("controller-not-running")["treatMissingData"] == "breaching"
            else "(missing data not breaching)",
        ),
    ),
    "controller's schedule rule (alerts)": Fact(
        "docs/alerts.md",
        r"`aws events describe-rule --name (\S+) --query State` \(the schedule rule is named as the function\)",
        lambda: (
            placeholders(inputs("aws:cloudwatch/eventRule:EventRule", "controller")["name"], stack=STACK)
            if inputs("aws:cloudwatch/eventRule:EventRule", "controller")["name"]
            == inputs("aws:lambda/function:Function", "controller")["name"]
            else "(not the function's name)"
        ),
    ),
    "no worker notice only above zero (alerts)": Rule(
        "docs/alerts.md",
        r"has no worker` \((made only while `desiredCount`, or `minWorkers` when scaling, is 1 or more)\)",
        no_worker_notice_only_above_zero,
    ),
    "not running only above zero (alerts)": Rule(
        "docs/alerts.md",
        r"(only while `desiredCount`, or `minWorkers` when scaling, is above 0)",
        not_running_only_above_zero,
    ),
    "demo schedule (README)": Fact(
        "README.md",
        r"due at the first whole minute at least (\d+) s ahead, which the server's scheduler \(on in the demo, "
        r"looking for new schedules every (\d+) s\)",
        lambda: (n(demo.SCHEDULE_LEAD.total_seconds()), n(harness.SCHEDULER_LOOP_SECONDS)),
    ),
    "demo CLI line (README)": Fact(
        "README.md",
        r"\(`(PREFECT_API_URL=\S+ prefect flow-run ls)`\)",
        lambda: demo.cli_line(f"http://127.0.0.1:{demo.PORT}/api"),
    ),
    "one environment (README)": Rule(
        "README.md",
        r"(`requirements-dev.txt` starts with `-r requirements.txt`)",
        dev_requirements_include_the_programs,
    ),
    "test pythons (README)": Rule(
        "README.md", r"Python 3.11 or later \((3\.\d+) to (3\.\d+), as for the program\)", supported_pythons
    ),
    "pulumi new prompts (README)": Rule(
        "README.md",
        r"the (work pool's name) \(a second stack in the same workspace needs its own\), the pool type, `(minWorkers)`",
        prompted,
    ),
    # config that cannot silently mean something else (components/config/keys.py, region.py)
    "every key (configuration)": Rule(
        "docs/configuration.md", r"(the table below lists every key the program reads)", keys_table_is_the_known_keys
    ),
    "unread key line (configuration)": Rule(
        "docs/configuration.md",
        r"``` (prefect-fargate:minWorker: is not a key [^`]*?minWorkers 0) ```",
        unread_key_line,
    ),
    "region meant (configuration)": Rule(
        "docs/configuration.md",
        r"such as `([\w-]+)` or `([\w-]+)`, is refused with the region it most likely means \(`Fix: pulumi config set "
        r"aws:region ([\w-]+)`",
        regions_meant,
    ),
    "region from the environment (configuration)": Fact(
        "docs/configuration.md",
        r"the program reads `(\w+)`, then `(\w+)`, as the AWS provider does",
        lambda: REGION_ENV,
    ),
    "priced region (configuration)": Rule(
        "docs/configuration.md",
        r"`(us-east-1 list prices, the stack's region)`, or, for a stack elsewhere, `(us-east-1 list prices, not "
        r"eu-central-1's \(the stack's region\))`",
        priced_lines,
    ),
    # ARM64 on Fargate Spot
    "spot either architecture (configuration)": Rule(
        "docs/configuration.md",
        r"`FARGATE_SPOT` for the worker service \(about 70% cheaper; (X86_64 or ARM64)\)",
        spot_runs_both,
    ),
    "spot either architecture (ecs-pools)": Rule(
        "docs/ecs-pools.md", r"(Spot runs `cpuArchitecture` X86_64 and ARM64 tasks alike)", spot_runs_both
    ),
    "platform version (ecs-pools)": Fact(
        "docs/ecs-pools.md",
        r"the service runs on platform `(\w+)`",
        lambda: inputs("aws:ecs/service:Service", kind="spot")["platformVersion"],
    ),
    "platform version (sizing)": Fact(
        "docs/sizing.md",
        r"the stack's tasks run on platform `(\w+)`",
        lambda: inputs("aws:ecs/service:Service", kind="spot")["platformVersion"],
    ),
}


@pytest.mark.parametrize("fact", FACTS.values(), ids=FACTS.keys())
def test_docs_state_what_the_program_registers(fact: Fact | Rule) -> None:
    found = stated(fact.page, fact.pattern)
    assert found, f"{fact.page} no longer matches /{fact.pattern}/: reword the row with the page"
    problems = {literals: fact.problem(*literals) for literals in found}
    assert {k: v for k, v in problems.items() if v} == {}


# Left out on purpose (stated, but not program values):
# - prices and the arithmetic on them (README and docs/sizing.md "What it costs", docs/alerts.md and
#   docs/security.md costs, docs/ecs-pools.md's per-run cost, docs/scaling.md's "What a nightly team pays" and
#   its request and metric-hour arithmetic): AWS's list prices, not registered anywhere;
# - measured results (docs/sizing.md's benchmark table and what it says, docs/runs.md's stop benchmark and the
#   supervisor's 12 / 76 MiB, docs/ecs-pools.md's registration benchmark and "4.4 to 5.4 s", the Spot test's
#   "about 3 s", docs/security.md's checkov counts, test-set sizes and times in README.md and docs/testing.md,
#   docs/testing.md's deploy rehearsal table, counts and times (tests/test_rehearse.py prints them),
#   docs/scaling.md's benchmark table, its simulation settings (5 s steps and polls, `--limit 4`) and times: 60 s
#   Fargate start (assumed), 5 s claim-to-run, 2.1 to 4.4 s and 2.2 s to Ready, 0.03 to 0.07 s per decision, 125 s
#   burst; the nightly stack table, which test_check_config ties to devtools/costs.py);
# - Prefect's, AWS's or Linux's own values, quoted as context: Prefect's 180 s heartbeat and 10 s poll defaults,
#   the server's 90 s / 30 s / 15 s worker liveness and 5 s proactive evaluation, AWS's two-minute Spot notice,
#   10 resource policies per account and free tiers, CloudWatch re-invoking an Auto Scaling action every minute
#   in ALARM, ECS not stopping a protected task, the 64 KiB pipe buffer, the AWS limits the deploy rehearsal
#   checks (pinned with their sources in tests/test_aws_quotas.py), HTTP statuses quoted from Prefect
#   and prefect-aws messages (those of this program's own are rows above);
# - examples a user types (`pulumi config set ... 2048`, `job_variables: {cpu: 4096, memory: 16384}`,
#   `pandas==2.2.3`, `fargate-pool-prod`), and the key policy block, which test_kms.py compares whole.
