"""The stack's AWS region, read as the AWS provider reads it and checked against the regions where ECS runs, by
botocore's own endpoint data (every partition: aws, aws-cn, aws-us-gov and the isolated ones). A misspelt region
(`eu-central1`, `eu-frankfurt-1`) is refused with the region it most likely means."""

from __future__ import annotations

import os
import re
from functools import cache

import botocore
import botocore.session
import pulumi

from components.config.reader import Reader, nearest, set_command

REGION_KEY = "aws:region"
# The AWS provider's own fallback when aws:region is not set (pulumi_aws/config/vars.py, `region`:
# `__config__.get('region') or _utilities.get_env('AWS_REGION', 'AWS_DEFAULT_REGION')`; pulumi_aws/provider.py
# likewise for a provider's `region`).
REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")


def stack_region() -> tuple[str | None, str]:
    """(the stack's region, where it was given: aws:region or an environment variable); (None, "") when neither
    is set, which is left to the provider (a shared-config profile's region, or the provider's own error)."""
    value = pulumi.runtime.get_config(REGION_KEY)
    if value:
        return str(value), REGION_KEY
    return next(((os.environ[name], name) for name in REGION_ENV if os.environ.get(name)), (None, ""))


@cache
def ecs_regions() -> dict[str, str]:
    """Every region botocore knows ECS in, across partitions, with its description ("Europe (Frankfurt)").
    botocore's bundled data only: no credentials, no network."""
    session = botocore.session.Session()
    endpoints = session.get_component("data_loader").load_data("endpoints")
    described = {
        code: spec.get("description", "") for part in endpoints["partitions"] for code, spec in part["regions"].items()
    }
    return {
        region: described.get(region, "")
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ecs", partition_name=partition)
    }


def meant_region(typed: str, regions: dict[str, str]) -> str:
    """The region a wrong name most likely means: the one whose place it names ("frankfurt" in `eu-frankfurt-1`:
    Europe (Frankfurt), eu-central-1), if the place word belongs to one region only and is no part of a region
    code (not "east" or "central"); else the nearest code."""
    code_words = {word for code in regions for word in code.split("-")}
    places: dict[str, set[str]] = {}
    for code, description in regions.items():
        place = description.partition("(")[2]
        for word in set(re.findall(r"[a-z]{4,}", place.lower())) - code_words:
            places.setdefault(word, set()).add(code)
    named = {code for word, codes in places.items() if len(codes) == 1 and word in typed.lower() for code in codes}
    return named.pop() if len(named) == 1 else nearest(typed, tuple(regions))


def read_region(r: Reader) -> str | None:
    """The stack's region if ECS runs there; None if unset (left to the provider) or refused."""
    region, source = stack_region()
    regions = ecs_regions()
    if region is None or region in regions:
        return region
    meant = meant_region(region, regions)
    given = "" if source == REGION_KEY else f" (from {source}; aws:region is not set)"
    r.fail(
        REGION_KEY,
        f"{region!r}{given} is not a region where ECS runs",
        f"a region code such as {meant}: one of the {len(regions)} that botocore {botocore.__version__} knows for ECS "
        "in every partition (a region newer than that: upgrade boto3/botocore where `pulumi up` runs)",
        set_command(REGION_KEY, meant),
    )
    return None
