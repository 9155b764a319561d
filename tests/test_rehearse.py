"""The deploy rehearsal (devtools/rehearse.py): every shape's AWS resources through terraform-provider-aws
5.100.0 itself (`validate`, `plan`, `apply`) against moto_server on 127.0.0.1, with the AWS quotas neither
enforces checked on the same run. Long (a few minutes): CI runs it with `-m long`. It skips, naming what is
missing, without terraform or the provider (devtools/terraform.py `missing`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BASE_CONFIG

from devtools import terraform
from devtools.rehearse import SHAPES, ShapeReport, rehearsal
from devtools.to_terraform import TERRAFORM_NAMES, mechanical_type, snake, terraform_type

pytestmark = [
    pytest.mark.slow,
    pytest.mark.long,
    pytest.mark.skipif(terraform.missing() is not None, reason=f"cannot rehearse: {terraform.missing()}"),
]

# A quota the program still exceeds, with where it is being fixed: each is a strict xfail, so the fix makes
# the test fail until its entry goes. (Empty since the scaling policy keeps within 20 step adjustments.)
KNOWN_QUOTA_VIOLATIONS: dict[str, str] = {}


@pytest.fixture(scope="module")
def rehearsed() -> Iterator[tuple[dict[str, ShapeReport], dict[str, Any]]]:
    with rehearsal() as run:
        reports = run.shapes([(name, {**BASE_CONFIG, **config}, None) for name, config in SHAPES.items()])
        for report in reports:
            print(report.text())
        yield {report.name: report for report in reports}, run.schema


@pytest.mark.parametrize("shape", SHAPES)
def test_every_aws_resource_is_created_or_a_named_gap(
    rehearsed: tuple[dict[str, ShapeReport], dict[str, Any]], shape: str
) -> None:
    """0 refused by the provider's schema or plan, 0 failed against moto; what moto or provider 5.100 lacks is
    named; every AWS resource the program registers is accounted for, and the rest is listed as not AWS."""
    report = rehearsed[0][shape]
    assert [f"{o.status} {o.address}: {o.detail}" for o in report.failures] == []
    accounted = [o for o in report.outcomes if o.resource is not None]
    assert len(accounted) == report.registered
    assert report.count("created") >= report.registered - 2
    for outcome in accounted:
        if outcome.status != "created":
            assert outcome.detail, outcome
    assert {r.typ for r in report.not_aws} >= {"pulumi-python:dynamic/prefect:WorkPool"}


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_QUOTA_VIOLATIONS[name]))
        if name in KNOWN_QUOTA_VIOLATIONS
        else name
        for name in SHAPES
    ],
)
def test_no_aws_quota_is_exceeded(rehearsed: tuple[dict[str, ShapeReport], dict[str, Any]], shape: str) -> None:
    report = rehearsed[0][shape]
    assert report.findings
    assert [finding.line() for finding in report.violations] == []


def test_each_exception_of_the_table_exists_in_the_providers_schema(
    rehearsed: tuple[dict[str, ShapeReport], dict[str, Any]],
) -> None:
    """The Terraform side of devtools/to_terraform.py's TERRAFORM_NAMES (its Pulumi side: test_to_terraform)."""
    schema = rehearsed[1]
    for key, name in TERRAFORM_NAMES.items():
        token, _, path = key.partition(".")
        data = token.rsplit(":", 1)[1][:1].islower()
        kind = "data_source_schemas" if data else "resource_schemas"
        if not path:
            assert name in schema[kind], key
            continue
        block = schema[kind][terraform_type(token)]["block"]
        for part in path.split(".")[:-1]:
            block = block["block_types"][TERRAFORM_NAMES.get(f"{token}.{part}", snake(part))]["block"]
        assert name in block.get("attributes", {}) or name in block.get("block_types", {}), key
        assert mechanical_type(token) != name
