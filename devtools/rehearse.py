"""Rehearse `pulumi up` with no AWS account: `python -m devtools.rehearse [stack] [--shape NAME ...]`.

Renders the program under the Pulumi mocks for a stack's config (as `devtools.check_config` does), turns
every AWS resource it registers into the Terraform resource pulumi-aws bridges (devtools/to_terraform.py),
and runs terraform-provider-aws itself on them against moto_server on 127.0.0.1: `terraform validate` (the
provider's schema: names, types, enums, conflicting and required arguments), `terraform plan` (its plan-time
checks) and `terraform apply` (its create code, answered by moto). Each resource is printed as created,
failed with the provider's message, or unsupported by moto (moto's gap, named); a resource that is not AWS
is listed with the test that covers it. AWS quotas that neither the provider nor moto enforce are checked
on the same run (devtools/aws_quotas.py).

With no stack it rehearses the shapes that matter (`SHAPES`); with a stack, `Pulumi.<stack>.yaml`. Existing
resources a config names (vpcId, subnetIds, securityGroupIds, kmsKeyArn, a registry credentials secret) are
created in moto first and the config pointed at them. Exit code 0 when every AWS resource was created or is
a named moto gap and no quota is exceeded; 1 otherwise; 2 when terraform or the provider is missing (the
message says what to install).

What it does not prove: the Docker build and push, the Prefect providers (tested on a real server), IAM
evaluation, and AWS behaviour moto does not emulate (docs/testing.md, "Deploy rehearsal").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools import aws_quotas, moto_plus, terraform
from devtools.harness import free_port, start_moto
from devtools.mocks import BASE_CONFIG, PROJECT, Resource, run_program
from devtools.to_terraform import Translation, translate

# Each shape: the config keys it sets over the minimal Cloud config (devtools/mocks.py BASE_CONFIG). Ids of
# existing resources are placeholders: `stand_ins` creates each in moto and puts moto's id in its place.
SHAPES: dict[str, dict[str, str]] = {
    "default": {},
    "ecs-pool": {"workPoolType": "ecs"},
    "scale-to-zero": {"minWorkers": "0", "maxWorkers": "25"},
    "spot": {"workerCapacity": "FARGATE_SPOT"},
    "worker-image": {
        "workerImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/prefect-worker@sha256:" + "0" * 64,
    },
    "kms-key": {"kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000"},
    "existing-vpc": {
        "vpcId": "vpc-00000000000000001",
        "subnetIds": json.dumps(["subnet-00000000000000001", "subnet-00000000000000002"]),
        "securityGroupIds": json.dumps(["sg-00000000000000001"]),
        "assignPublicIp": "false",
        "controllerInVpc": "true",
    },
}

AT_ONCE = 3  # shapes through terraform at the same time

# What is not AWS, and the tests that cover it instead (the rehearsal lists each, never skips one silently).
NOT_AWS = {
    "docker:index/image:Image": "tests/test_agent_image.py (its build inputs; building and pushing need Docker)",
    "pulumi-python:dynamic/prefect:WorkPool": "tests/test_work_pool.py (its provider against a real Prefect server)",
    "pulumi-python:dynamic/prefect:Automation": (
        "tests/test_work_pool_automations.py and tests/test_run_notifications.py (against a real Prefect server)"
    ),
}

# Provider waiters that moto cannot end, turned off in the rehearsal (each shape's notes say so): (Terraform
# type, argument) -> (value used, why).
MOTO_WAITERS = {
    ("aws_ecs_service", "wait_for_steady_state"): (
        False,
        "moto starts no tasks, so the provider's wait for the service's steady state would never end",
    ),
}

# moto's answers for what it does not emulate (moto/core/responses.py and its services' NotImplementedError).
MOTO_GAP = re.compile(
    r"(501|NotImplemented|not (yet )?implemented|has not been implemented|InvalidAction|UnknownOperation)", re.I
)


# Outcomes that are no failure: made, read, or a gap of the rehearsal's tools that is named.
GOOD = ("created", "read", "unsupported", "not in provider")


@dataclass
class Outcome:
    address: str
    resource: Resource | None  # None for a data source
    status: str  # created, failed, unsupported, invalid, not planned, not in provider
    detail: str = ""


@dataclass
class ShapeReport:
    name: str
    config: dict[str, str]
    outcomes: list[Outcome] = field(default_factory=list)
    not_aws: list[Resource] = field(default_factory=list)
    findings: list[aws_quotas.Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: list[tuple[str, float]] = field(default_factory=list)  # terraform's commands, in seconds
    registered: int = 0  # AWS resources the program registered

    def count(self, *statuses: str) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses and o.resource is not None)

    @property
    def violations(self) -> list[aws_quotas.Finding]:
        return [f for f in self.findings if f.violated]

    @property
    def failures(self) -> list[Outcome]:
        """What a real `pulumi up` would likely fail on too: refused by the provider, or failed against moto."""
        return [o for o in self.outcomes if o.status not in GOOD]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.violations

    def tally(self) -> str:
        return (
            f"{self.count('created')} created, {self.count('unsupported')} unsupported by moto, "
            f"{self.count('not in provider')} not in provider {terraform.PROVIDER_VERSION}, "
            f"{len(self.failures)} failed, {len(self.not_aws)} not AWS, {len(self.violations)} quota(s) exceeded"
        )

    def text(self) -> str:
        lines = [f"== {self.name} ({', '.join(f'{k}={v}' for k, v in self.config.items()) or 'defaults'})"]
        lines += [f"  note: {note}" for note in self.notes]
        for outcome in self.outcomes:
            what = f" ({outcome.resource.typ} {outcome.resource.name})" if outcome.resource else ""
            detail = f": {outcome.detail}" if outcome.detail else ""
            lines.append(f"  {outcome.status:15} {outcome.address}{what}{detail}")
        for resource in self.not_aws:
            covered = NOT_AWS.get(resource.typ, "no test (a failure above)")
            lines.append(f"  {'not AWS':15} {resource.typ} {resource.name}: covered by {covered}")
        lines.append(f"  quotas: {len(self.findings)} measured, {len(self.violations)} exceeded")
        lines += [f"    {finding.line()}" for finding in self.violations]
        timings = ", ".join(f"{command} {seconds:.0f} s" for command, seconds in self.timings)
        lines.append(f"  {self.name}: {self.tally()}; {self.seconds:.0f} s (terraform: {timings})")
        return "\n".join(lines)


# --- moto stand-ins for what a config names --------------------------------------------------------------


def stand_ins(config: dict[str, str], endpoint: str, label: str) -> tuple[dict[str, str], list[str]]:
    """The config with each existing resource it names created in moto and replaced by moto's id."""
    import boto3

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=terraform.REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    config, notes = dict(config), []

    def replaced(key: str, old: str, new: str) -> None:
        notes.append(f"{key} {old} stands in moto as {new}")

    ec2 = client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    if given := config.get("vpcId"):
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        config["vpcId"] = vpc
        replaced("vpcId", given, vpc)
    if subnets := json.loads(config.get("subnetIds") or "[]"):
        zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
        created = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zones[i % len(zones)])["Subnet"][
                "SubnetId"
            ]
            for i in range(len(subnets))
        ]
        config["subnetIds"] = json.dumps(created)
        replaced("subnetIds", ", ".join(subnets), ", ".join(created))
    if groups := json.loads(config.get("securityGroupIds") or "[]"):
        created = [
            ec2.create_security_group(GroupName=f"{label}-{i}", Description="stand-in", VpcId=vpc)["GroupId"]
            for i in range(len(groups))
        ]
        config["securityGroupIds"] = json.dumps(created)
        replaced("securityGroupIds", ", ".join(groups), ", ".join(created))
    if given := config.get("kmsKeyArn"):
        key = client("kms").create_key(Description="stand-in for kmsKeyArn")["KeyMetadata"]["Arn"]
        config["kmsKeyArn"] = key
        replaced("kmsKeyArn", given, key)
    if given := config.get("workerImageRegistryCredentialsSecretArn"):
        secret = client("secretsmanager").create_secret(
            Name=f"{label}-registry-credentials", SecretString=json.dumps({"username": "u", "password": "p"})
        )["ARN"]
        config["workerImageRegistryCredentialsSecretArn"] = secret
        replaced("workerImageRegistryCredentialsSecretArn", given, secret)
    return config, notes


# --- terraform ------------------------------------------------------------------------------------------


def _line_addresses(text: str) -> dict[int, str]:
    """main.tf.json's line number -> the resource written there (written with indent=1: type at 2, name at 3)."""
    addresses, kind, typ = {}, "", ""
    for number, line in enumerate(text.splitlines(), start=1):
        if m := re.match(r'^ "(resource|data)": \{', line):
            kind = m.group(1)
        elif m := re.match(r'^  "([^"]+)": \{', line):
            typ = m.group(1)
        elif (m := re.match(r'^   "([^"]+)": \{', line)) and kind:
            addresses[number] = f"{typ}.{m.group(1)}" if kind == "resource" else f"data.{typ}.{m.group(1)}"
    return addresses


def _address_at(lines: dict[int, str], line: int) -> str | None:
    starts = [n for n in lines if n <= line]
    return lines[max(starts)] if starts else None


def _message(diagnostic: dict[str, Any]) -> str:
    text = f"{diagnostic.get('summary', '')} {diagnostic.get('detail', '')}".strip()
    return re.sub(r"\s+", " ", text)[:600]


@dataclass
class Prepared:
    """A shape rendered and translated, ready for terraform."""

    report: ShapeReport
    translation: Translation
    default_tags: dict[str, str] | None


class Rehearsal:
    """One moto_server for a run of several shapes. Each shape is its own stack (`rehearse-<shape>`), so their
    physical names differ and they share moto; terraform runs for several shapes at once (`AT_ONCE`), since
    most of an apply is the provider waiting (an S3 lifecycle configuration alone waits about a minute for
    AWS's consistency)."""

    def __init__(self, workdir: Path, endpoint: str, moto_log: Callable[[], str] = str) -> None:
        self.workdir, self.endpoint, self.moto_log = workdir, endpoint, moto_log
        self.schema: dict[str, Any] = {}  # the provider's schema, read once

    def shapes(self, jobs: list[tuple[str, dict[str, str], list[str] | None]]) -> list[ShapeReport]:
        """Rehearse each (name, config, secret keys): rendered one after another (the Pulumi mocks are one
        global runtime), then through terraform `AT_ONCE` at a time."""
        prepared = [self.prepare(*job) for job in jobs]
        self.read_schema()
        with ThreadPoolExecutor(AT_ONCE) as pool:
            return list(pool.map(self.finish, prepared))

    def prepare(self, name: str, config: dict[str, str], secret_keys: list[str] | None) -> Prepared:
        started = time.monotonic()
        config, notes = stand_ins(config, self.endpoint, name)
        report = ShapeReport(name, {k: v for k, v in config.items() if k not in BASE_CONFIG}, notes=notes)
        run = run_program(config, secret_keys=secret_keys, stack=f"rehearse-{name}"[:40])
        report.registered = sum(1 for r in run.resources if r.typ.startswith("aws:"))
        report.findings = list(aws_quotas.check(run))
        translation = translate(run)
        report.not_aws = translation.not_aws
        for resource in report.not_aws:
            if resource.typ not in NOT_AWS:
                report.outcomes.append(Outcome(resource.typ, resource, "failed", "not AWS and covered by no test"))
        report.seconds = time.monotonic() - started  # rendering; finish adds its own terraform time
        return Prepared(report, translation, _default_tags(config))

    def read_schema(self) -> None:
        if not self.schema:
            tf = terraform.Terraform(self.workdir / "schema")
            tf.write({"terraform": {"required_providers": terraform.required_providers()}})
            tf.init()
            self.schema = tf.schema()

    def finish(self, prepared: Prepared) -> ShapeReport:
        report, started = prepared.report, time.monotonic()
        tf = terraform.Terraform(self.workdir / report.name)
        report.outcomes += self.apply(tf, prepared.translation, prepared.default_tags, report.notes)
        report.seconds += time.monotonic() - started
        report.timings = tf.timings
        return report

    def apply(
        self,
        tf: terraform.Terraform,
        translation: Translation,
        default_tags: dict[str, str] | None,
        notes: list[str],
    ) -> list[Outcome]:
        provider = terraform.moto_provider(self.endpoint, default_tags)
        write = lambda t: _write(tf, t, provider)  # noqa: E731
        write(translation)
        tf.init()
        outcomes: list[Outcome] = []
        gaps: dict[str, str] = {}
        for address in translation.addresses:
            typ, name = address.split(".", 1)
            arguments = terraform.complete_objects(self.schema, typ, translation.arguments(address))
            for (waiter_type, argument), (value, why) in MOTO_WAITERS.items():
                if typ == waiter_type and arguments.get(argument) not in (None, value):
                    arguments[argument] = value
                    notes.append(f"{address}: {argument} = {json.dumps(value)} here: {why}")
            translation.resources[typ][name] = arguments
            # Arguments newer than this provider (pulumi-aws 7 bridges the 6.x line): left out, saying which.
            if missing := terraform.missing_arguments(self.schema, typ, arguments):
                gaps[address] = (
                    f"terraform-provider-aws {terraform.PROVIDER_VERSION} has no {', '.join(missing)} "
                    "(pulumi-aws 7 bridges the 6.x provider)"
                )
        translation = _drop(translation, gaps, "not in provider", outcomes)
        translation = self._validated(tf, translation, write, outcomes)
        translation = self._planned(tf, translation, write, outcomes)
        outcomes += self._applied(tf, translation)
        return outcomes

    def _validated(
        self,
        tf: terraform.Terraform,
        translation: Translation,
        write: Callable[[Translation], dict[int, str]],
        outcomes: list[Outcome],
    ) -> Translation:
        """`terraform validate`, leaving out each resource it refuses (and what needs it), until it passes."""
        while True:
            lines = write(translation)
            result = json.loads(tf.run("validate", "-json", "-no-color", check=False).stdout)
            refused: dict[str, str] = {}
            for diagnostic in result.get("diagnostics", []):
                if diagnostic.get("severity") == "error":
                    line = diagnostic.get("range", {}).get("start", {}).get("line", 0)
                    refused.setdefault(_address_at(lines, line) or "main.tf.json", _message(diagnostic))
            if not refused:
                return translation
            if set(refused) - set(translation.addresses):
                raise terraform.TerraformError(f"terraform validate: {refused}")
            translation = _drop(translation, refused, "invalid", outcomes)

    def _planned(
        self,
        tf: terraform.Terraform,
        translation: Translation,
        write: Callable[[Translation], dict[int, str]],
        outcomes: list[Outcome],
    ) -> Translation:
        """`terraform plan`, leaving out each resource whose plan the provider refuses, until it passes."""
        while True:
            write(translation)
            code, messages = tf.events("plan", "-out=tfplan")
            if code == 0:
                return translation
            refused = {
                m["diagnostic"].get("address", "plan"): "plan: " + _message(m["diagnostic"])
                for m in messages
                if m.get("type") == "diagnostic" and m["diagnostic"].get("severity") == "error"
            }
            if not refused or set(refused) - set(translation.addresses):
                raise terraform.TerraformError(f"terraform plan failed: {refused or messages[-3:]}")
            translation = _drop(translation, refused, "invalid", outcomes)

    def _applied(self, tf: terraform.Terraform, translation: Translation) -> list[Outcome]:
        """`terraform apply` of the plan: each resource created, failed (with the provider's message, or moto's
        gap when moto lacks what the provider called), or never started because what it needs failed."""
        _, messages = tf.events("apply", "tfplan", timeout=600)
        started, created, failed = set(), set(), {}
        for m in messages:
            kind = m.get("type")
            if kind == "apply_start":
                started.add(m["hook"]["resource"]["addr"])
            elif kind == "apply_complete":
                created.add(m["hook"]["resource"]["addr"])
            elif kind == "diagnostic" and m["diagnostic"].get("severity") == "error":
                failed.setdefault(m["diagnostic"].get("address", "apply"), _message(m["diagnostic"]))
            elif kind == "timeout":
                failed.setdefault("apply", m["@message"])
        outcomes = []
        for typ, sources in translation.data.items():
            for name in sources:
                address = f"data.{typ}.{name}"
                outcomes.append(
                    Outcome(address, None, "failed" if address in failed else "read", failed.get(address, ""))
                )
        for address, resource in translation.addresses.items():
            if address in created:
                leaned = [
                    f"moto lacks {service} {action}; devtools/moto_plus.py answered it with {answer}"
                    for (service, action), (types, answer) in moto_plus.ANSWERS.items()
                    if address.split(".")[0] in types
                ]
                outcomes.append(Outcome(address, resource, "created", "; ".join(leaned)))
            elif address in failed:
                gap = self.moto_gap(failed[address])
                status, detail = ("unsupported", gap) if gap else ("failed", failed[address])
                outcomes.append(Outcome(address, resource, status, detail))
            elif address in started:
                outcomes.append(Outcome(address, resource, "failed", failed.get("apply", "started, never finished")))
            else:
                outcomes.append(Outcome(address, resource, "not applied", "a resource it needs failed"))
        outcomes += [Outcome(a, None, "failed", m) for a, m in failed.items() if not a.startswith(("aws_", "data."))]
        return outcomes

    def moto_gap(self, message: str) -> str | None:
        """What moto lacks, when that is why the provider failed: moto answers an action it has not implemented
        with a 500 (or 501) and logs "The <action> action has not been implemented"."""
        operation = re.search(r"operation error ([^:]+): (\w+)", message)
        lacking = set(re.findall(r"The (\w+) action has not been implemented", self.moto_log()))
        if operation and re.sub(r"(?<!^)(?=[A-Z])", "_", operation.group(2)).lower() in lacking:
            return (
                f"moto has not implemented {operation.group(1)} {operation.group(2)} (the provider calls it: {message})"
            )
        if MOTO_GAP.search(message):
            return f"moto: {message}"
        return None


def _write(tf: terraform.Terraform, translation: Translation, provider: dict[str, Any]) -> dict[int, str]:
    """main.tf.json for `translation`; line number -> the resource written there."""
    tf.write(translation.config(provider, terraform.required_providers()), translation.files)
    return _line_addresses((tf.workdir / "main.tf.json").read_text())


def _drop(translation: Translation, reasons: dict[str, str], status: str, outcomes: list[Outcome]) -> Translation:
    """`translation` less the resources in `reasons` and those that need them, each recorded in `outcomes`."""
    for address, reason in reasons.items():
        outcomes.append(Outcome(address, translation.addresses[address], status, reason))
    for address in sorted(translation.needing(set(reasons))):
        outcomes.append(Outcome(address, translation.addresses[address], "not applied", "needs a resource left out"))
    return translation.without(set(reasons) | translation.needing(set(reasons)))


def _default_tags(config: dict[str, str]) -> dict[str, str] | None:
    tags = config.get("aws:defaultTags")
    return json.loads(tags).get("tags") if tags else None


@contextlib.contextmanager
def rehearsal(workdir: Path | None = None) -> Iterator[Rehearsal]:
    """moto_server on a free port and a work dir, both gone afterwards."""
    own = workdir is None
    root = workdir or Path(tempfile.mkdtemp(prefix="prefect-fargate-rehearse-"))
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    moto = start_moto(port, {"PATH": "/usr/bin:/bin", "HOME": str(root)}, logs, plus=True)
    try:
        yield Rehearsal(root, f"http://127.0.0.1:{port}", moto.log)
    finally:
        moto.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.rehearse", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", nargs="?", help="rehearse Pulumi.<stack>.yaml (default: every shape below)")
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="only these shapes (repeatable)")
    parser.add_argument("--keep", type=Path, help="keep the work dirs (main.tf.json per shape) under this dir")
    args = parser.parse_args(argv)
    if args.stack:
        from devtools.check_config import StackFileError, check, stack_config

        try:  # the program's own refusal first, as `pulumi up` (and check_config) would print it
            code, text = check(args.stack)
            config, secrets, _ = stack_config(args.stack)
        except StackFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if code:
            print(text, file=sys.stderr)
            return 1
        jobs = [(args.stack, {k.removeprefix(f"{PROJECT}:"): v for k, v in config.items()}, secrets)]
    else:
        jobs = [(name, {**BASE_CONFIG, **SHAPES[name]}, None) for name in (args.shape or SHAPES)]
    if problem := terraform.missing():
        print(f"error: cannot rehearse: {problem}", file=sys.stderr)
        return 2
    with rehearsal(args.keep) as run:
        reports = run.shapes(jobs)
    for report in reports:
        print(report.text())
    print("\n".join(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.tally()}; {r.seconds:.0f} s" for r in reports))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
