"""The rehearsal's parts that need no terraform (fast): reading the provider's schema, placing terraform's
diagnostics, naming moto's gaps, and what is and is not a failure. The rehearsal itself runs in the long
set (tests/test_rehearse.py)."""

from __future__ import annotations

import json
from typing import Any

from conftest import Resource

from devtools import moto_plus, terraform
from devtools.rehearse import NOT_AWS, SHAPES, Outcome, Rehearsal, ShapeReport, _address_at, _line_addresses, main

# A slice of a provider schema as `terraform providers schema -json` gives it.
SCHEMA: dict[str, Any] = {
    "resource_schemas": {
        "aws_security_group": {
            "block": {
                "attributes": {
                    "name": {"type": "string"},
                    "egress": {
                        "type": [
                            "set",
                            ["object", {"cidr_blocks": ["list", "string"], "self": "bool", "from_port": "number"}],
                        ]
                    },
                }
            }
        },
        "aws_ecs_service": {
            "block": {
                "attributes": {"name": {"type": "string"}},
                "block_types": {
                    "capacity_provider_strategy": {
                        "nesting_mode": "set",
                        "block": {
                            "attributes": {"capacity_provider": {"type": "string"}, "weight": {"type": "number"}}
                        },
                    }
                },
            }
        },
    },
    "data_source_schemas": {},
}


def test_object_attributes_are_given_whole_and_blocks_left_alone() -> None:
    group = {"name": "g", "egress": [{"cidr_blocks": ["0.0.0.0/0"], "from_port": 0}]}
    assert terraform.complete_objects(SCHEMA, "aws_security_group", group) == {
        "name": "g",
        "egress": [{"cidr_blocks": ["0.0.0.0/0"], "from_port": 0, "self": None}],
    }
    service = {"capacity_provider_strategy": [{"capacity_provider": "FARGATE_SPOT"}]}
    assert terraform.complete_objects(SCHEMA, "aws_ecs_service", service) == service
    assert terraform.complete_objects(SCHEMA, "aws_security_group", {"egress": "${var.x}"}) == {"egress": "${var.x}"}


def test_arguments_the_provider_lacks_are_named_with_their_path() -> None:
    service = {"name": "s", "capacity_provider_strategy": [{"capacity_provider": "F", "base": 1}], "region": "x"}
    assert terraform.missing_arguments(SCHEMA, "aws_ecs_service", service) == [
        "capacity_provider_strategy.base",
        "region",
    ]
    assert terraform.missing_arguments(SCHEMA, "aws_ecs_service", {"name": "s", "depends_on": []}) == []
    assert terraform.missing_arguments(SCHEMA, "aws_nothing", {}) == ["the type aws_nothing"]


def test_moto_provider_points_every_service_at_moto_and_fails_fast() -> None:
    provider = terraform.moto_provider("http://127.0.0.1:1", {"stack": "dev"})
    assert set(provider["endpoints"].values()) == {"http://127.0.0.1:1"}
    assert provider["max_retries"] <= 3 and provider["default_tags"] == {"tags": {"stack": "dev"}}


def test_missing_names_what_to_install(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.setattr(terraform, "MIRROR", tmp_path)
    monkeypatch.setattr(terraform.shutil, "which", lambda _: None)
    problem = terraform.missing() or ""
    assert "terraform is not on PATH" in problem and "install Terraform" in problem
    assert f"terraform-provider-aws {terraform.PROVIDER_VERSION}" in problem and "TF_PROVIDER_MIRROR" in problem


def test_a_diagnostic_is_placed_on_the_resource_written_at_its_line() -> None:
    document = {
        "resource": {"aws_a": {"one": {"x": 1}, "two": {"y": [1, 2]}}, "aws_b": {"three": {}}},
        "data": {"aws_vpc": {"v": {"default": True}}},
    }
    lines = _line_addresses(json.dumps(document, indent=1))
    text = json.dumps(document, indent=1).splitlines()
    y_line = next(n for n, line in enumerate(text, start=1) if '"y"' in line)
    assert _address_at(lines, y_line) == "aws_a.two"
    assert set(lines.values()) == {"aws_a.one", "aws_a.two", "aws_b.three", "data.aws_vpc.v"}


def test_moto_gaps_are_named_from_what_moto_logged() -> None:
    log = "NotImplementedError: The list_tags_for_resource action has not been implemented\n"
    rehearsal = Rehearsal(workdir=None, endpoint="http://127.0.0.1:1", moto_log=lambda: log)  # type: ignore[arg-type]
    message = (
        "listing tags for X: operation error Application Auto Scaling: ListTagsForResource, "
        "https response error StatusCode: 500"
    )
    assert "moto has not implemented Application Auto Scaling ListTagsForResource" in (
        rehearsal.moto_gap(message) or ""
    )
    assert rehearsal.moto_gap("operation error ECS: CreateService, InvalidParameterException: bad") is None


def test_only_created_read_and_named_gaps_are_no_failure() -> None:
    resource = Resource("aws:ecs/cluster:Cluster", "c", "c-id", {}, {})
    report = ShapeReport("s", {})
    report.outcomes = [Outcome("aws_ecs_cluster.c", resource, s, "why") for s in ("created", "unsupported")]
    assert report.ok
    for status in ("failed", "invalid", "not applied"):
        report.outcomes.append(Outcome("aws_ecs_cluster.d", resource, status, "why"))
        assert not report.ok
        report.outcomes.pop()


def test_a_resource_that_is_not_aws_and_covered_by_no_test_is_reported_failed_not_a_crash() -> None:
    """`prepare` records the failure; the report still prints, naming the gap (it once raised KeyError instead)."""
    resource = Resource("prefect:index:Unknown", "u", "u-id", {}, {})
    report = ShapeReport("s", {}, not_aws=[resource])
    report.outcomes = [Outcome(resource.typ, resource, "failed", "not AWS and covered by no test")]
    text = report.text()
    assert "prefect:index:Unknown u: covered by no test" in text
    assert not report.ok


def test_the_shapes_and_what_covers_what_is_not_aws() -> None:
    assert {"default", "ecs-pool", "scale-to-zero", "spot", "worker-image", "kms-key", "existing-vpc"} == set(SHAPES)
    assert SHAPES["scale-to-zero"] == {"minWorkers": "0", "maxWorkers": "25"}
    assert SHAPES["existing-vpc"]["controllerInVpc"] == "true"
    for covered_by in NOT_AWS.values():
        assert covered_by.startswith("tests/test_")
    assert ("application-autoscaling", "ListTagsForResource") in moto_plus.ANSWERS


def test_a_stack_with_config_errors_stops_with_the_programs_own_message(capsys: Any) -> None:
    """The committed dev stack has no Prefect credentials yet: refused as `pulumi up` would, before terraform."""
    assert main(["dev"]) == 1
    error = capsys.readouterr().err
    assert "prefect-fargate:prefectApiKey: is not set" in error and "pulumi config set --secret" in error
    assert main(["no-such-stack"]) == 2
    assert "no Pulumi.no-such-stack.yaml" in capsys.readouterr().err


def test_without_terraform_it_says_what_to_install(monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setattr(terraform, "missing", lambda: "terraform is not on PATH: install Terraform 1.x")
    assert main(["--shape", "default"]) == 2
    assert "cannot rehearse: terraform is not on PATH: install Terraform 1.x" in capsys.readouterr().err
