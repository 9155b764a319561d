"""Pulumi mocks: run the program (or one component) with no engine, cloud or network.

Shared by the tests (tests/conftest.py re-exports them) and `devtools.check_config` / `devtools.demo`.

`run_program(config)` runs `__main__.py` under `pulumi.runtime.set_mocks` with the given stack
config and returns every registered resource and the stack outputs, all resolved. The mocks answer
like AWS does where the program reads an answer back (ARNs, URLs, a new version id per secret value).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import runpy
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "prefect-fargate"
STACK = "test"
ORGANIZATION = "test-org"
ACCOUNT = "123456789012"
REGION = "us-east-1"
SQS_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}"
API_KEY = "pnu_TestKeyThatMustNeverLeak0123456789"
ACCOUNT_ID = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
WORKSPACE_ID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
# The mark this stack's Prefect objects carry under these mocks (prefect_api.owner_mark).
OWNER = f"{ORGANIZATION}/{PROJECT}/{STACK}@{ACCOUNT}/{REGION}"

BASE_CONFIG: dict[str, str] = {
    "prefectApiKey": API_KEY,
    "prefectAccountId": ACCOUNT_ID,
    "prefectWorkspaceId": WORKSPACE_ID,
}


def unwrap(value: Any) -> Any:
    """Strip Pulumi's secret wrappers, to see inputs as the provider would get them."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return unwrap(value["value"])
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Resource:
    typ: str
    name: str
    id: str
    inputs: dict[str, Any]  # as registered, secrets still wrapped
    outputs: dict[str, Any]
    urn: str = ""
    # input -> URNs of the resources whose outputs it was made from, and every resource it waits for
    # (its inputs' resources and `depends_on`), as the engine is told them (RegisterResourceRequest).
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)

    @property
    def plain_inputs(self) -> dict[str, Any]:
        return unwrap(self.inputs)

    def json_input(self, key: str) -> Any:
        """An input that holds a JSON document (a policy, container definitions), parsed."""
        return json.loads(self.plain_inputs[key])


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The id and read-back outputs AWS would give this resource."""
    plain = unwrap(inputs)
    arn = f"arn:aws:mock:{REGION}:{ACCOUNT}:{name}"
    out: dict[str, Any] = {"arn": arn, "name": plain.get("name", name)}
    rid = f"{name}-id"
    if typ == "aws:ecr/repository:Repository":
        out.update(
            repositoryUrl=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}",
            arn=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}",
            registryId=ACCOUNT,
            name=name,
        )
    elif typ == "docker:index/image:Image":
        repo = plain["imageName"].rsplit(":", 1)[0]
        out["repoDigest"] = f"{repo}@sha256:{_digest(plain.get('build'), plain['imageName'])}"
    elif typ == "aws:s3/bucket:Bucket":
        out.update(bucket=f"{name}-0a1b2c3", arn=f"arn:aws:s3:::{name}-0a1b2c3")
        rid = out["bucket"]
    elif typ == "aws:secretsmanager/secret:Secret":
        out["arn"] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbC123"
        rid = out["arn"]
    elif typ == "aws:secretsmanager/secretVersion:SecretVersion":
        # A new value is a new version with a new id; the same value keeps its version.
        out["versionId"] = str(uuid.UUID(_digest(plain["secretId"], plain["secretString"])[:32]))
    elif typ == "aws:iam/role:Role":
        out.update(arn=f"arn:aws:iam::{ACCOUNT}:role/{name}", name=name)
        rid = name
    elif typ == "aws:ecs/taskDefinition:TaskDefinition":
        out["arn"] = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{plain['family']}:1"
    elif typ == "aws:ecs/cluster:Cluster":
        out.update(arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}", name=name)
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        out["arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{plain['name']}"
    elif typ == "aws:ec2/securityGroup:SecurityGroup":
        rid = "sg-0" + _digest(name)[:16]
    elif typ == "aws:sqs/queue:Queue":  # named as given, or after the resource (Pulumi's auto-name)
        out.update(arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{out['name']}", url=f"{SQS_URL}/{out['name']}")
        rid = out["url"]
    elif typ == "aws:cloudwatch/eventRule:EventRule":
        out["arn"] = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{out['name']}"
    elif typ == "aws:sns/topic:Topic":  # named after the resource (Pulumi's auto-name)
        out["arn"] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{out['name']}"
        rid = out["arn"]
    elif typ == "aws:lambda/function:Function":
        out["arn"] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{out['name']}"
    return rid, {**inputs, **out}


INVOKES: dict[str, dict[str, Any]] = {
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": {
        "userName": "AWS",
        "password": "ecr-token",
        "authorizationToken": "QVdTOmVjci10b2tlbg==",
        "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
    },
    "aws:index/getCallerIdentity:getCallerIdentity": {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root"},
    "aws:index/getRegion:getRegion": {"region": REGION, "name": REGION, "id": REGION},
    "aws:index/getPartition:getPartition": {"partition": "aws", "dnsSuffix": "amazonaws.com"},
    "aws:ec2/getVpc:getVpc": {"id": "vpc-0defa0170000000000"[:21], "cidrBlock": "172.31.0.0/16"},
    "aws:ec2/getSubnets:getSubnets": {"ids": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]},
}


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource and invoke, answering as AWS would."""

    def __init__(self) -> None:
        self.resources: list[Resource] = []
        self.invokes: list[tuple[str, dict[str, Any]]] = []
        self.registering = threading.local()  # the registration `new_resource` answers (RecordingMonitor sets it)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if not args.custom:  # components: nothing to answer
            return None, {}
        rid, outputs = _computed(args.typ, args.name, args.inputs)
        resource = Resource(args.typ, args.name, rid, args.inputs, outputs)
        if (graph := getattr(self.registering, "graph", None)) is not None:
            resource.urn, resource.property_dependencies, resource.dependencies = graph
        self.resources.append(resource)
        return rid, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.invokes.append((args.token, dict(args.args)))
        if args.token not in INVOKES:
            raise AssertionError(f"unexpected invoke {args.token}")
        return INVOKES[args.token]


class RecordingMonitor(MockMonitor):
    """The mock engine, telling the mocks each registration's URN and dependencies (the program's own graph,
    which `devtools.rehearse` turns into Terraform references). `new_resource` runs inside `RegisterResource`
    on the same thread (pulumi/runtime/mocks.py), so a thread-local carries them across."""

    mocks: RecordingMocks

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        by_input = {key: list(deps.urns) for key, deps in request.propertyDependencies.items()}
        self.mocks.registering.graph = (urn, by_input, list(request.dependencies))
        try:
            return super().RegisterResource(request)
        finally:
            self.mocks.registering.graph = None


@dataclass
class Run:
    """What one program run registered and exported."""

    mocks: RecordingMocks
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    @property
    def resources(self) -> list[Resource]:
        return self.mocks.resources

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name_contains: str = "") -> Resource:
        found = [r for r in self.of_type(typ) if name_contains in r.name]
        assert len(found) == 1, f"expected one {typ} named *{name_contains}*, got {[r.name for r in found]}"
        return found[0]

    def container(self) -> dict[str, Any]:
        """The worker's container definition as the task definition registers it."""
        (container,) = self.one("aws:ecs/taskDefinition:TaskDefinition").json_input("containerDefinitions")
        return container


def name_values(entries: list[dict[str, str]]) -> dict[str, str]:
    """ECS's `[{"name": ..., "value": ...}]` lists (a container's environment, RunTask's overrides) as a dict."""
    return {entry["name"]: entry["value"] for entry in entries}


def set_stack_config(config: dict[str, str], secret_keys: list[str]) -> None:
    """Stack config as the CLI hands it to the program: `project:key` names, secrets marked."""
    from components.config.reader import full_key

    pulumi.runtime.set_all_config({full_key(k): v for k, v in config.items()}, [full_key(k) for k in secret_keys])


def load_stack_config(config: dict[str, str], secret_keys: list[str] | None = None) -> Any:
    """`load_config()` on this stack config, outside any program run (it makes Outputs: give it a loop)."""
    from components.config import load_config

    asyncio.set_event_loop(asyncio.new_event_loop())
    set_stack_config(config, ["prefectApiKey"] if secret_keys is None else secret_keys)
    return load_config()


def _configure(config: dict[str, str], secret_keys: list[str], mocks: RecordingMocks, stack: str) -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.reset_options(project=PROJECT, stack=stack)
    set_stack_config(config, secret_keys)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT, stack=stack, preview=False, organization=ORGANIZATION, monitor=monitor
    )


async def _resolve(outputs: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    values: dict[str, Any] = {}
    secret: set[str] = set()
    for key, value in outputs.items():
        output = pulumi.Output.from_input(value)
        values[key] = await output.future()
        if await output.is_secret():
            secret.add(key)
    return values, secret


def run_pulumi(
    fn: Callable[[], Any],
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    mocks: RecordingMocks | None = None,
    stack: str = STACK,
) -> Run:
    """Run `fn` (which registers resources) under fresh mocks and wait for every resource.

    Pass your own `mocks` to inspect what was registered when `fn` raises.
    """
    config = BASE_CONFIG if config is None else config
    mocks = RecordingMocks() if mocks is None else mocks
    _configure(config, ["prefectApiKey"] if secret_keys is None else secret_keys, mocks, stack)
    _sync_await(run_pulumi_func(fn))
    root = pulumi.runtime.get_root_resource()
    outputs, secret = _sync_await(_resolve(getattr(root, "outputs", None) or {}))
    return Run(mocks=mocks, outputs=outputs, secret_outputs=secret)


def resolve(value: pulumi.Input[Any]) -> Any:
    """The value of an Output from a finished run."""
    return _sync_await(pulumi.Output.from_input(value).future())


def run_program(
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    mocks: RecordingMocks | None = None,
    stack: str = STACK,
) -> Run:
    """Run the whole `__main__.py` with this stack config."""
    return run_pulumi(lambda: runpy.run_path(str(ROOT / "__main__.py")), config, secret_keys, mocks, stack)
