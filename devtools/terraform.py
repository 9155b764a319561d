"""terraform with terraform-provider-aws from a local filesystem mirror, against moto_server on 127.0.0.1.

Shared by `devtools.rehearse` and tests/test_service_rollout.py. Nothing leaves the machine: the provider
comes from the mirror (`TF_PROVIDER_MIRROR`, default /opt/tf-plugins; the registry is excluded), and every
AWS endpoint the provider calls is the local moto_server.

terraform-provider-aws 5.100.0 is the last 5.x release; pulumi-aws 7 bridges the 6.x line, so an argument
added in 6.x is not in this provider's schema (`missing_arguments` names them; the rehearsal lists them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from devtools.mocks import REGION  # moto's default account matches the mocks' too

MIRROR = Path(os.environ.get("TF_PROVIDER_MIRROR", "/opt/tf-plugins"))
PROVIDER_VERSION = "5.100.0"
PROVIDER_SOURCE = "hashicorp/aws"
# The provider's endpoint keys (its `endpoints` block) for every service the program's resources use.
MOTO_SERVICES = (
    "applicationautoscaling",
    "cloudwatch",
    "ec2",
    "ecr",
    "ecs",
    "events",
    "iam",
    "kms",
    "lambda",
    "logs",
    "s3",
    "secretsmanager",
    "sns",
    "sqs",
    "sts",
)


def provider_dir() -> Path:
    return MIRROR / "registry.terraform.io" / PROVIDER_SOURCE / PROVIDER_VERSION


def missing() -> str | None:
    """What this machine lacks to run the provider, with how to install it; None when nothing is missing."""
    problems = []
    if shutil.which("terraform") is None:
        problems.append(
            "terraform is not on PATH: install Terraform 1.x (HashiCorp's release zip or apt repository), "
            "so that `terraform version` runs"
        )
    if not provider_dir().is_dir():
        problems.append(
            f"terraform-provider-aws {PROVIDER_VERSION} is not in the filesystem mirror {MIRROR}: on a machine that "
            f"reaches the Terraform registry, run `terraform providers mirror <dir>` for a configuration requiring "
            f"{PROVIDER_SOURCE} = {PROVIDER_VERSION}, copy <dir> here and set TF_PROVIDER_MIRROR=<dir> "
            f"(expected {provider_dir()}/<os>_<arch>/)"
        )
    return "; ".join(problems) or None


def required_providers() -> dict[str, Any]:
    return {"aws": {"source": PROVIDER_SOURCE, "version": PROVIDER_VERSION}}


def moto_provider(endpoint: str, default_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """The `aws` provider block for moto_server at `endpoint`: fake credentials, every service at moto."""
    provider: dict[str, Any] = {
        "region": REGION,
        "access_key": "testing",
        "secret_key": "testing",
        "skip_credentials_validation": True,
        "skip_metadata_api_check": True,
        "skip_region_validation": True,
        "s3_use_path_style": True,
        # The AWS SDK retries a 5xx 25 times by default, with backoff: moto's 500 for an action it lacks
        # would keep an apply waiting for many minutes before it says so.
        "max_retries": 2,
        "endpoints": {service: endpoint for service in MOTO_SERVICES},
    }
    if default_tags:
        provider["default_tags"] = {"tags": default_tags}
    return provider


class TerraformError(Exception):
    """terraform exited non-zero; the message holds the end of its output."""


# Where init copies the provider once; each work dir then links the 700 MB binary instead of copying it.
PLUGIN_CACHE = Path(tempfile.gettempdir()) / "prefect-fargate-terraform-plugins"


class Terraform:
    """terraform in one work dir, with the provider from the mirror (through the plugin cache)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        PLUGIN_CACHE.mkdir(parents=True, exist_ok=True)
        rc = workdir / "terraform.rc"
        rc.write_text(
            f'provider_installation {{\n  filesystem_mirror {{ path = "{MIRROR}" }}\n'
            f'  direct {{ exclude = ["registry.terraform.io/{PROVIDER_SOURCE}"] }}\n}}\n'
            f'plugin_cache_dir = "{PLUGIN_CACHE}"\n'
        )
        self.env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(rc),
            "TF_IN_AUTOMATION": "1",
            "CHECKPOINT_DISABLE": "1",
            "TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE": "1",
        }
        self.timings: list[tuple[str, float]] = []  # (command, seconds), for the rehearsal's report

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        done = subprocess.run(
            ["terraform", *args], cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        self.timings.append((args[0], time.monotonic() - start))
        if check and done.returncode != 0:
            raise TerraformError(f"terraform {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done

    def write(self, config: dict[str, Any], files: dict[str, bytes] | None = None) -> None:
        (self.workdir / "main.tf.json").write_text(json.dumps(config, indent=1))
        for name, content in (files or {}).items():
            (self.workdir / name).write_bytes(content)

    def init(self) -> None:
        if not (self.workdir / ".terraform").exists():
            self.run("init", "-input=false", "-no-color")

    def schema(self) -> dict[str, Any]:
        """The provider's resource and data-source schemas (`terraform providers schema -json`)."""
        document = json.loads(self.run("providers", "schema", "-json").stdout)
        schema: dict[str, Any] = document["provider_schemas"][f"registry.terraform.io/{PROVIDER_SOURCE}"]
        return schema

    def events(self, command: str, *args: str, timeout: float = 900) -> tuple[int, list[dict[str, Any]]]:
        """Run a `-json` command (plan, apply): its exit code and its machine-readable UI messages."""
        try:
            done = self.run(command, "-json", "-input=false", "-no-color", *args, check=False, timeout=timeout)
        except subprocess.TimeoutExpired as exc:  # what it said so far, and that it did not finish
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            timed_out = {"type": "timeout", "@message": f"terraform {command} did not finish in {timeout:.0f} s"}
            return -1, [*(json.loads(line) for line in stdout.splitlines() if line.startswith("{")), timed_out]
        (self.workdir / f"{command}.jsonl").write_text(done.stdout)  # the whole stream, for a closer look
        messages = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 and not messages:
            raise TerraformError(f"terraform {command} failed:\n{done.stderr[-3000:]}")
        return done.returncode, messages


def missing_arguments(schema: dict[str, Any], typ: str, arguments: dict[str, Any]) -> list[str]:
    """Arguments (dotted paths into blocks) that the provider's schema for resource `typ` does not have."""
    if typ not in schema["resource_schemas"]:
        return [f"the type {typ}"]
    return _missing(schema["resource_schemas"][typ]["block"], arguments, "")


def _missing(block: dict[str, Any], arguments: dict[str, Any], prefix: str) -> list[str]:
    found = []
    attributes, blocks = block.get("attributes", {}), block.get("block_types", {})
    for name, value in arguments.items():
        if name in ("depends_on", "count", "lifecycle"):
            continue
        if name in blocks:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    found += _missing(blocks[name]["block"], item, f"{prefix}{name}.")
        elif name not in attributes:
            found.append(f"{prefix}{name}")
    return found


def complete_objects(schema: dict[str, Any], typ: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """`arguments` with every attribute of object type given in full (absent keys as null).

    Some nested objects are attributes, not blocks (the provider's "attributes as blocks", such as a security
    group's `egress`): in JSON syntax Terraform then wants every key of the object, where Pulumi's bridge
    passes the ones not set as null. Blocks need no such help.
    """
    if typ not in schema["resource_schemas"]:
        return arguments
    return _complete(schema["resource_schemas"][typ]["block"], arguments)


def _complete(block: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    done = dict(arguments)
    attributes, blocks = block.get("attributes", {}), block.get("block_types", {})
    for name, value in arguments.items():
        if name in attributes:
            done[name] = _complete_value(attributes[name]["type"], value)
        elif name in blocks:
            inner = blocks[name]["block"]
            done[name] = (
                [_complete(inner, v) if isinstance(v, dict) else v for v in value]
                if isinstance(value, list)
                else _complete(inner, value)
                if isinstance(value, dict)
                else value
            )
    return done


def _complete_value(cty: Any, value: Any) -> Any:
    """A value of a cty type (`["list", ["object", {...}]]`, `["object", {...}]`) with objects completed."""
    if not isinstance(cty, list) or value is None or isinstance(value, str):  # a primitive, or a ${reference}
        return value
    kind = cty[0]
    if kind in ("list", "set") and isinstance(value, list):
        return [_complete_value(cty[1], v) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _complete_value(cty[1], v) for k, v in value.items()}
    if kind == "object" and isinstance(value, dict):
        return {key: _complete_value(sub, value.get(key)) for key, sub in cty[1].items()}
    return value
