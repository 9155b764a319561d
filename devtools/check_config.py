"""Check a stack's config without the Pulumi CLI, AWS or Prefect: `python -m devtools.check_config [stack]`.

Loads `Pulumi.<stack>.yaml` (default `dev`) over the defaults of `Pulumi.yaml`'s `config:` as the CLI
hands them to the program (every value a string; lists and objects as JSON), and runs the program
under the Pulumi mocks. A bad config prints the program's own message (every problem with its
`pulumi config set` fix, as `pulumi up` prints it) and exits 1; a good one prints what `pulumi up`
would create and its monthly cost. A `secure:` value stays encrypted: it counts as set and secret,
and its content is not checked. Made for a pull-request check: it needs no credentials.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import yaml

from devtools.costs import PRICED_REGION, monthly_estimate
from devtools.mocks import PROJECT, ROOT, Run, run_program

SECRET_PLACEHOLDER = "[secret]"  # stands for a `secure:` value, which only the CLI can decrypt


class StackFileError(Exception):
    """The stack file cannot be read: one line."""


def _as_cli_string(value: Any) -> str:
    """A config value as the CLI passes it to the program: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _type_problem(stack: str, key: str, spec: Any, value: Any) -> str | None:
    """The CLI's own refusal of a value of the wrong type for a key `Pulumi.yaml` types (it checks before the
    program runs; the wording is the one docs/configuration.md quotes), or None."""
    declared = spec.get("type") if isinstance(spec, dict) else None
    text = str(value).lower() if not isinstance(value, (list, dict)) else None
    fits = {
        "integer": text is not None and text.lstrip("-").isdigit(),
        "boolean": text in ("true", "false"),
        "array": isinstance(value, list),
    }.get(declared, True)
    if fits:
        return None
    shown = "array<string>" if declared == "array" else declared
    return f"Stack '{stack}' with configuration key '{key}' must be of type '{shown}'"


def stack_config(stack: str, root: Path = ROOT) -> tuple[dict[str, str], list[str], list[str]]:
    """(`namespace:key` -> value, the secret keys) for a stack, as `pulumi up` would pass them, and the CLI's
    refusals of values of the wrong type."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise StackFileError(f"no {path.name} in {root} (stack files here: {', '.join(stacks) or 'none'})")
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())
    config: dict[str, str] = {}
    for key, spec in (project.get("config") or {}).items():  # the project's own keys, with their defaults
        if isinstance(spec, dict) and "default" in spec:
            config[f"{PROJECT}:{key}"] = _as_cli_string(spec["default"])
    secrets = []
    try:
        given = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path.name} is not valid YAML: {str(exc).splitlines()[0]}") from None
    declared = project.get("config") or {}
    wrong_types = []
    for key, value in (given.get("config") or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"  # the CLI reads a bare key as the project's
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[full], secrets = SECRET_PLACEHOLDER, [*secrets, full]
            continue
        name = full.split(":", 1)[1]
        if full.startswith(f"{PROJECT}:") and (problem := _type_problem(stack, name, declared.get(name), value)):
            wrong_types.append(problem)
        config[full] = _as_cli_string(value)
    return config, secrets, wrong_types


@contextlib.contextmanager
def _warnings() -> Iterator[list[str]]:
    """What the program warns (`pulumi.log.warn`), which the CLI shows as `warning:` lines."""
    seen: list[str] = []
    warn = pulumi.log.warn
    pulumi.log.warn = lambda message, *_, **__: seen.append(message)
    try:
        yield seen
    finally:
        pulumi.log.warn = warn


def priced_region(region: str | None) -> str:
    """Which region's prices the estimate uses, said against the stack's own."""
    if region == PRICED_REGION:
        return f"{PRICED_REGION} list prices, the stack's region"
    if region is None:
        return f"{PRICED_REGION} list prices; the stack's region is not set (aws:region)"
    return (
        f"{PRICED_REGION} list prices, not {region}'s (the stack's region): prices differ by region, "
        "see the AWS pricing pages devtools/costs.py links"
    )


def summary(run: Run, stack: str, region: str | None) -> str:
    """What `pulumi up` would create, in a few lines; the cost priced in us-east-1, said against `region`."""
    task = run.one("aws:ecs/taskDefinition:TaskDefinition").plain_inputs
    service = run.one("aws:ecs/service:Service").plain_inputs
    command = run.container()["command"]
    limit = command[command.index("--limit") + 1] if "--limit" in command else "none"
    capacity = ", ".join(s["capacityProvider"] for s in service.get("capacityProviderStrategies") or []) or "FARGATE"
    counts = Counter(resource.typ for resource in run.resources)
    estimate = monthly_estimate(run)
    lines = [
        f"Stack {stack}: the config is valid. `pulumi up` would create {sum(counts.values())} resources:",
        *(f"  {n:3d}  {typ}" for typ, n in sorted(counts.items())),
        f"Worker: {int(service['desiredCount'])} task(s) of {task['cpu']} cpu / {task['memory']} MiB, "
        f"{task['runtimePlatform']['cpuArchitecture']}, on {capacity}; flow runs at once per worker (--limit): {limit}",
        f"Work pool: {run.outputs['workPool']} (type {run.outputs['workPoolType']}) at {run.outputs['prefectApiUrl']}",
        f"Monthly cost estimate ({priced_region(region)}; 730 hours; logs and S3 usage not included):",
        *(f"  ${line.dollars:7.2f}  {line.item}" for line in estimate.lines),
        f"  ${estimate.total:7.2f}  total",
    ]
    if estimate.per_flow_run_hour is not None:
        lines.append(
            f"  plus ${estimate.per_flow_run_hour:.4f} per hour each flow-run task runs (billed per second, "
            "1 minute minimum; about 70% less on FARGATE_SPOT)"
        )
    return "\n".join(lines)


def check(stack: str, root: Path = ROOT) -> tuple[int, str]:
    """(exit code, what to print) for one stack."""
    from components.config import ConfigError
    from components.config.region import stack_region

    config, secrets, wrong_types = stack_config(stack, root)
    if wrong_types:  # the CLI stops here, before the program runs
        return 1, "\n".join(f"error: {problem}" for problem in wrong_types)
    with _warnings() as warnings:
        try:
            run = run_program(config, secret_keys=secrets, stack=stack)
        except ConfigError as exc:  # what the CLI prints for the program's RunError
            return 1, "\n".join([*(f"warning: {w}" for w in warnings), f"error: {exc}"])
    region, _ = stack_region()  # as the program read it: aws:region, else AWS_REGION/AWS_DEFAULT_REGION
    return 0, "\n".join([*(f"warning: {w}" for w in warnings), summary(run, stack, region)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.check_config", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", nargs="?", default="dev", help="reads Pulumi.<stack>.yaml (default: dev)")
    args = parser.parse_args(argv)
    try:
        code, text = check(args.stack)
    except StackFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main())
