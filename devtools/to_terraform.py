"""A mocked program run as Terraform JSON: the resources pulumi-aws would hand terraform-provider-aws.

pulumi-aws is a bridge over terraform-provider-aws: each `aws:` resource is a Terraform resource whose
arguments are the Pulumi inputs renamed (pulumi-terraform-bridge). Most names map mechanically:
`aws:<module>/<camelType>:<Type>` is `aws_<module>_<snake_type>`, an input is its snake_case Python name
(the SDK's own, `pulumi._types.input_type_py_to_pulumi_names`), an object is a block and a list of objects
a list of blocks. The exceptions, where pulumi-aws renamed a type or an argument (an `xxx_name` called
`name`, a list block called in the plural), are the one table `TERRAFORM_NAMES`; tests/test_to_terraform.py
checks that each entry's Pulumi side exists in the installed pulumi-aws and that it is an exception, and the
rehearsal's long test checks its Terraform side against the provider's schema.

What guides the walk is the installed SDK: each resource class's `__init__(args: <Type>Args)` overload gives
the args class, whose typed properties say which inputs are nested objects, lists of them, or maps (whose
keys are data and stay as they are: `dimensions`, `environment.variables`, `inputPaths`, `tags`).

References are the program's own: every input's dependencies as the Pulumi engine is told them
(`Resource.property_dependencies`, recorded by devtools/mocks.py's monitor). Where a dependency's output
value (its id, ARN, name, or another value the mocks computed) appears in the input, it becomes a Terraform
reference (`${aws_x.name.attr}`), also inside a JSON document; a dependency not seen in the value becomes a
`depends_on`. Values read through invokes (the default VPC and its subnets) become data sources.

Pulumi auto-names what the program leaves unnamed (pulumi-aws provider/autonaming.go: every resource with
an input `name`, `<logical name>-<7 random hex>`); the translation does the same, so the provider checks
the name a real `pulumi up` would send (its length, its characters).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import re
import typing
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi._types as pulumi_types
from pulumi.runtime import rpc

from devtools.mocks import INVOKES, Resource, Run, unwrap

# Where pulumi-aws's names are not the mechanical ones (module docstring). Keys: a Pulumi type token, or a
# token and a property path (`<token>.<property>[.<nested property>]`, lists not counted); values: the
# Terraform name. Nothing else may differ: a name missing here and wrong fails `terraform validate`.
TERRAFORM_NAMES: dict[str, str] = {
    # EC2's network types have no `ec2_` in Terraform.
    "aws:ec2/securityGroup:SecurityGroup": "aws_security_group",
    "aws:ec2/getVpc:getVpc": "aws_vpc",
    "aws:ec2/getSubnets:getSubnets": "aws_subnets",
    # An `xxx_name` argument pulumi-aws calls `name` (and auto-names).
    "aws:lambda/function:Function.name": "function_name",
    "aws:cloudwatch/metricAlarm:MetricAlarm.name": "alarm_name",
    "aws:lambda/permission:Permission.function": "function_name",
    # An archive: the bridge writes it to a zip file and passes the file (AssetTranslation, ZIPArchive).
    "aws:lambda/function:Function.code": "filename",
    # List blocks pulumi-aws names in the plural.
    "aws:ecs/service:Service.capacityProviderStrategies": "capacity_provider_strategy",
    "aws:appautoscaling/policy:Policy.stepScalingPolicyConfiguration.stepAdjustments": "step_adjustment",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration.rules": "rule",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration.rules": "rule",
    "aws:ec2/getSubnets:getSubnets.filters": "filter",
}

# Invokes that read the caller's account, region or partition, or the ECR login for the Docker push: the
# mocks answer them with moto's own account (123456789012) and us-east-1, so their values stand as literals.
ENVIRONMENT_INVOKES = frozenset(
    {
        "aws:index/getCallerIdentity:getCallerIdentity",
        "aws:index/getRegion:getRegion",
        "aws:index/getPartition:getPartition",
        "aws:ecr/getAuthorizationToken:getAuthorizationToken",
    }
)
# Their values (the account id, the region, ...) stand for no resource, even where one echoes them (an ECR
# repository's registry id is the account id): never a reference.
ENVIRONMENT_VALUES = frozenset(
    value for token in ENVIRONMENT_INVOKES for value in INVOKES[token].values() if isinstance(value, str)
)
# Outputs a reference may use first when several hold the same value (a role's id is its name).
PREFERRED_OUTPUTS = ("arn", "name", "id")
AUTONAME_HEX = 7  # pulumi-terraform-bridge's AutoName: the logical name, "-", 7 random hex characters


class TranslationError(Exception):
    """A registered input the translation cannot map: the SDK has no such property, or no such type."""


def snake(camel: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", camel).lower()


def mechanical_type(token: str) -> str:
    """`aws:ecs/taskDefinition:TaskDefinition` -> `aws_ecs_task_definition`; `aws:ec2/getVpc:getVpc` -> `aws_ec2_vpc`
    (which the table corrects to `aws_vpc`)."""
    _, module_and_type, _ = token.split(":")
    module, camel = module_and_type.split("/")
    camel = camel.removeprefix("get") if camel.startswith("get") and camel[3:4].isupper() else camel
    return f"aws_{module}_{snake(camel)}"


def terraform_type(token: str) -> str:
    return TERRAFORM_NAMES.get(token) or mechanical_type(token)


def terraform_argument(token: str, path: str, python_name: str) -> str:
    """The Terraform name of the property at `path` (Pulumi names, dotted) whose Python name is `python_name`."""
    return TERRAFORM_NAMES.get(f"{token}.{path}", python_name)


# --- the SDK: what each token's inputs are --------------------------------------------------------------


def sdk_resource_class(token: str) -> type:
    """The pulumi-aws class registered for a resource token (the package's own resource-module table)."""
    import pulumi_aws  # noqa: F401 (registers its resource modules)

    package, module, _ = token.split(":")
    registered = rpc.get_resource_module(package, module, "")
    if registered is None or token not in registered.mod_info["classes"]:  # type: ignore[attr-defined]
        raise TranslationError(f"pulumi-aws registers no resource {token}")
    info = registered.mod_info  # type: ignore[attr-defined]
    return typing.cast(type, getattr(importlib.import_module(info["fqn"]), info["classes"][token]))


def sdk_args_class(token: str) -> type:
    """The args class of a resource: the `args` parameter of its `__init__` overload."""
    cls = sdk_resource_class(token)
    for overload in typing.get_overloads(cls.__init__):  # type: ignore[misc]
        annotation = overload.__annotations__.get("args")
        if isinstance(annotation, str):  # a forward reference, named in the class's module
            annotation = eval(annotation, vars(importlib.import_module(cls.__module__)))  # noqa: S307 (the SDK's own)
        if annotation is not None:
            return pulumi_types.unwrap_optional_type(annotation)
    raise TranslationError(f"{cls.__name__} has no args class")


def sdk_invoke_function(token: str) -> Any:
    """The pulumi-aws function of an invoke token (`aws:ec2/getSubnets:getSubnets` -> `pulumi_aws.ec2.get_subnets`)."""
    _, module_and_name, name = token.split(":")
    module = module_and_name.split("/")[0]
    package = importlib.import_module("pulumi_aws" if module == "index" else f"pulumi_aws.{module}")
    function = getattr(package, snake(name), None)
    if function is None:
        raise TranslationError(f"pulumi-aws has no invoke {token}")
    return function


def sdk_output_names(token: str) -> dict[str, str]:
    """A resource's outputs: Pulumi name -> Python name."""
    return pulumi_types.resource_pulumi_to_py_names(sdk_resource_class(token))


def _element_type(sequence_type: Any) -> Any:
    (element,) = typing.get_args(sequence_type) or (Any,)
    if typing.get_origin(element) is typing.Union:  # Input[T]: Union[T, Awaitable[T], Output[T]]
        element = typing.get_args(element)[0]
    return pulumi_types.unwrap_type(element)


def _input_properties(args_class: type) -> dict[str, tuple[str, Any]]:
    """Pulumi name -> (Python name, unwrapped type) of an args class's properties."""
    types = pulumi_types.input_type_types(args_class)
    return {
        pulumi_name: (python_name, pulumi_types.unwrap_type(types[pulumi_name]))
        for python_name, pulumi_name in pulumi_types.input_type_py_to_pulumi_names(args_class).items()
    }


def property_type(token: str, path: str) -> Any:
    """The SDK type of the input at a dotted Pulumi path (lists not counted); TranslationError if there is none."""
    current: Any = sdk_args_class(token)
    for part in path.split("."):
        if typing.get_origin(current) in (list, Sequence, typing.Sequence):
            current = _element_type(current)
        if not (isinstance(current, type) and pulumi_types.is_input_type(current)):
            raise TranslationError(f"{token}: {path} is not an input (no object at {part})")
        properties = _input_properties(current)
        if part not in properties:
            raise TranslationError(f"{token}: no input {path} in pulumi-aws ({part} not among {sorted(properties)})")
        current = properties[part][1]
    return current


# --- Terraform JSON ------------------------------------------------------------------------------------


def _escape(literal: str) -> str:
    """A literal as a Terraform template string: `${` and `%{` would start an interpolation."""
    return literal.replace("${", "$${").replace("%{", "%%{")


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass
class References:
    """Values that stand for another resource's output: value -> Terraform expression (without `${}`).
    `by_value` may appear inside a longer text (ids, ARNs, names: distinctive); `whole` only as the entire
    value (an input the resource echoes back, such as a scalable target's `resourceId`)."""

    by_value: dict[str, str] = field(default_factory=dict)
    lists: dict[tuple[str, ...], str] = field(default_factory=dict)
    whole: dict[str, str] = field(default_factory=dict)

    def add(self, value: Any, expression: str, whole_only: bool = False) -> None:
        if isinstance(value, str) and value and whole_only:
            self.whole.setdefault(value, expression)
        elif isinstance(value, str) and len(value) >= 4 and value not in ENVIRONMENT_VALUES:  # nor a chance match
            self.by_value.setdefault(value, expression)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            self.lists.setdefault(tuple(value), expression)
            for index, item in enumerate(value):
                self.add(item, f"{expression}[{index}]", whole_only)

    def merged(self, other: References) -> References:
        return References(
            {**other.by_value, **self.by_value}, {**other.lists, **self.lists}, {**other.whole, **self.whole}
        )

    def template(self, text: str) -> tuple[str, set[str]]:
        """`text` with every value replaced by its reference (longest first), and the expressions used."""
        if text in self.whole and text not in self.by_value:
            return f"${{{self.whole[text]}}}", {self.whole[text]}
        if not self.by_value:
            return _escape(text), set()
        pattern = re.compile("|".join(re.escape(v) for v in sorted(self.by_value, key=len, reverse=True)))
        pieces, used, last = [], set(), 0
        for match in pattern.finditer(text):
            expression = self.by_value[match.group(0)]
            pieces += [_escape(text[last : match.start()]), f"${{{expression}}}"]
            used.add(expression)
            last = match.end()
        pieces.append(_escape(text[last:]))
        return "".join(pieces), used


def archive_zip(archive: pulumi.AssetArchive) -> bytes:
    """An AssetArchive as the zip the bridge uploads (file and string assets; nested archives flattened)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:

        def add(prefix: str, assets: Mapping[str, Any]) -> None:
            for name, asset in sorted(assets.items()):
                path = f"{prefix}{name}"
                if isinstance(asset, pulumi.FileAsset):
                    zipped.writestr(
                        zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), Path(asset.path).read_bytes()
                    )
                elif isinstance(asset, pulumi.StringAsset):
                    zipped.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), asset.text)
                elif isinstance(asset, pulumi.AssetArchive):
                    add(f"{path}/", asset.assets)
                else:
                    raise TranslationError(f"cannot zip {type(asset).__name__} at {path}")

        add("", archive.assets)
    return buffer.getvalue()


@dataclass
class Translation:
    """main.tf.json's resources and data sources, and what each Terraform address stands for."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # type -> name -> arguments
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    addresses: dict[str, Resource] = field(default_factory=dict)  # "aws_x.name" -> the Pulumi resource
    not_aws: list[Resource] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # file name -> content (a function's zip)

    def config(self, provider: dict[str, Any], required_providers: dict[str, Any]) -> dict[str, Any]:
        document: dict[str, Any] = {
            "terraform": {"required_providers": required_providers},
            "provider": {"aws": provider},
            "resource": self.resources,
        }
        if self.data:
            document["data"] = self.data
        return document

    def arguments(self, address: str) -> dict[str, Any]:
        typ, name = address.split(".", 1)
        return self.resources[typ][name]

    def needing(self, addresses: set[str]) -> set[str]:
        """The resources that refer to any of `addresses`, directly or through others (not those themselves)."""
        found: set[str] = set()
        frontier = set(addresses)
        while frontier:
            pattern = re.compile("|".join(re.escape(a) + r'(?=[."])' for a in sorted(frontier)))
            frontier = {
                address
                for address in self.addresses
                if address not in found | addresses and pattern.search(json.dumps(self.arguments(address)))
            }
            found |= frontier
        return found

    def without(self, addresses: set[str]) -> Translation:
        """This translation less some resources (drop `needing(addresses)` too, or their references dangle)."""
        kept = Translation(data=self.data, not_aws=self.not_aws, files=self.files)
        for address, resource in self.addresses.items():
            if address in addresses:
                continue
            typ, name = address.split(".", 1)
            kept.resources.setdefault(typ, {})[name] = self.resources[typ][name]
            kept.addresses[address] = resource
        return kept


def _address_name(logical: str, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", logical)
    name = name if re.match(r"[A-Za-z_]", name) else f"r_{name}"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def autoname(resource: Resource) -> str:
    """The physical name Pulumi gives an unnamed resource: its logical name and a suffix, here drawn from
    its URN (stable, and different in each stack, as Pulumi's random one is)."""
    seed = resource.urn or resource.name
    return f"{resource.name}-{hashlib.sha256(seed.encode()).hexdigest()[:AUTONAME_HEX]}"


class Translator:
    """Walks one run's resources into a Translation."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.out = Translation()
        self.by_urn: dict[str, str] = {}  # URN -> Terraform address
        self.not_aws_by_urn = {r.urn: r for r in run.resources if not r.typ.startswith("aws:")}
        self.invoke_refs = References()
        taken: dict[str, set[str]] = {}
        for resource in run.resources:
            if not resource.typ.startswith("aws:"):
                self.out.not_aws.append(resource)
                continue
            typ = terraform_type(resource.typ)
            address = f"{typ}.{_address_name(resource.name, taken.setdefault(typ, set()))}"
            self.out.addresses[address] = resource
            self.by_urn[resource.urn] = address

    def translate(self) -> Translation:
        self._invokes()
        for address, resource in self.out.addresses.items():
            typ, name = address.split(".", 1)
            self.out.resources.setdefault(typ, {})[name] = self._resource(address, resource)
        return self.out

    # --- invokes: data sources --------------------------------------------------------------------------

    def _invokes(self) -> None:
        seen: dict[tuple[str, str], str] = {}
        for token, args in self.run.mocks.invokes:
            if token in ENVIRONMENT_INVOKES:
                continue
            key = (token, json.dumps(args, sort_keys=True, default=str))
            if key in seen:
                continue
            typ = terraform_type(token)
            name = f"{snake(token.rsplit(':', 1)[1])}_{len(seen)}"
            seen[key] = f"data.{typ}.{name}"
            function = sdk_invoke_function(token)
            hints = typing.get_type_hints(function)
            arguments: dict[str, Any] = {}
            for key_name, value in unwrap(args).items():
                python_name = snake(key_name)
                if python_name not in hints:
                    raise TranslationError(f"{token}: pulumi-aws's {function.__name__} takes no {key_name}")
                argument = terraform_argument(token, key_name, python_name)
                arguments[argument] = self._value(
                    value, pulumi_types.unwrap_type(hints[python_name]), self.invoke_refs, set(), token, key_name
                )
            self.out.data.setdefault(typ, {})[name] = arguments
            for result_name, result in INVOKES[token].items():
                self.invoke_refs.add(result, f"data.{typ}.{name}.{snake(result_name)}")

    # --- resources ------------------------------------------------------------------------------------

    def _outputs(self, address: str, resource: Resource) -> References:
        """What another resource may read from this one: its id, ARN and name and the values the mocks computed
        (anywhere in a value), and the inputs it echoes back (as a whole value)."""
        refs = References()
        names = sdk_output_names(resource.typ)
        plain_inputs = resource.plain_inputs
        candidates = [("id", resource.id, False)]
        for pulumi_name, value in resource.outputs.items():
            if pulumi_name in names:
                attribute = terraform_argument(resource.typ, pulumi_name, names[pulumi_name])
                echoed = pulumi_name in plain_inputs and pulumi_name != "name"
                candidates.append((attribute, unwrap(value), echoed))
        candidates.sort(key=lambda c: (PREFERRED_OUTPUTS.index(c[0]) if c[0] in PREFERRED_OUTPUTS else 99, c[0]))
        for attribute, value, echoed in candidates:
            refs.add(value, f"{address}.{attribute}", whole_only=echoed)
        return refs

    def _dependencies(self, urns: list[str], seen: frozenset[str] = frozenset()) -> list[str]:
        """The AWS resources among `urns`; through a resource that is not AWS (the Docker image, whose digest
        names the ECR repository) to the AWS resources it was made from."""
        found: list[str] = []
        for urn in urns:
            if urn in self.by_urn:
                found.append(self.by_urn[urn])
            elif urn not in seen and (other := self.not_aws_by_urn.get(urn)) is not None:
                inner = [u for deps in other.property_dependencies.values() for u in deps] + other.dependencies
                found += self._dependencies(inner, seen | {urn})
        return list(dict.fromkeys(found))

    def _resource(self, address: str, resource: Resource) -> dict[str, Any]:
        args_class = sdk_args_class(resource.typ)
        properties = _input_properties(args_class)
        inputs = resource.plain_inputs
        arguments: dict[str, Any] = {}
        used: set[str] = set()
        waits_for: set[str] = set()
        for key, value in inputs.items():
            if value is None or key == "__provider":
                continue
            if key not in properties:
                raise TranslationError(f"{resource.typ} ({resource.name}): pulumi-aws has no input {key}")
            python_name, sdk_type = properties[key]
            deps = self._dependencies(resource.property_dependencies.get(key, []))
            waits_for.update(deps)
            refs = References()
            for dep in deps:
                refs = refs.merged(self._outputs(dep, self.out.addresses[dep]))
            refs = refs.merged(self.invoke_refs)
            argument = terraform_argument(resource.typ, key, python_name)
            if isinstance(value, pulumi.AssetArchive):
                filename = f"{address.replace('.', '-')}.zip"
                content = archive_zip(value)
                self.out.files[filename] = content
                arguments[argument] = filename
                arguments["source_code_hash"] = base64.b64encode(hashlib.sha256(content).digest()).decode()
                continue
            arguments[argument] = self._value(value, sdk_type, refs, used, resource.typ, key)
        if "name" in properties and inputs.get("name") is None:  # pulumi-aws auto-names it (module docstring)
            arguments[terraform_argument(resource.typ, "name", properties["name"][0])] = autoname(resource)
        waits_for.update(self.by_urn[u] for u in resource.dependencies if u in self.by_urn)
        referenced = {expression.split(".")[0] + "." + expression.split(".")[1] for expression in used}
        if depends_on := sorted(waits_for - referenced - {address}):
            arguments["depends_on"] = depends_on
        return arguments

    def _value(self, value: Any, sdk_type: Any, refs: References, used: set[str], token: str, path: str) -> Any:
        origin = typing.get_origin(sdk_type)
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return _number(value)
        if isinstance(value, str):
            text, expressions = refs.template(value)
            used.update(expressions)
            return text
        if isinstance(value, list):
            if all(isinstance(v, str) for v in value) and tuple(value) in refs.lists:
                expression = refs.lists[tuple(value)]
                used.add(expression)
                return f"${{{expression}}}"
            element = _element_type(sdk_type) if origin in (list, Sequence, typing.Sequence) else Any
            return [self._value(v, element, refs, used, token, path) for v in value]
        if isinstance(value, dict):
            if isinstance(sdk_type, type) and pulumi_types.is_input_type(sdk_type):
                properties = _input_properties(sdk_type)
                block: dict[str, Any] = {}
                for key, item in value.items():
                    if item is None:
                        continue
                    if key not in properties:
                        raise TranslationError(f"{token}: pulumi-aws has no input {path}.{key}")
                    python_name, item_type = properties[key]
                    argument = terraform_argument(token, f"{path}.{key}", python_name)
                    block[argument] = self._value(item, item_type, refs, used, token, f"{path}.{key}")
                return block
            if origin in (dict, Mapping, typing.Mapping) or sdk_type is Any:  # a map: its keys are data
                return {k: self._value(v, Any, refs, used, token, path) for k, v in value.items() if v is not None}
            if str in _union_members(sdk_type):  # a JSON document given as an object (a policy)
                return self._value(json.dumps(value), str, refs, used, token, path)
            raise TranslationError(f"{token}: {path} is an object, but pulumi-aws types it {sdk_type}")
        raise TranslationError(f"{token}: {path} holds a {type(value).__name__}, which Terraform JSON cannot carry")


def _union_members(sdk_type: Any) -> tuple[Any, ...]:
    return typing.get_args(sdk_type) if typing.get_origin(sdk_type) is typing.Union else (sdk_type,)


def translate(run: Run) -> Translation:
    """The run's AWS resources as Terraform resources, its resource-identifying invokes as data sources."""
    return Translator(run).translate()
