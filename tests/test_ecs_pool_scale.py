"""Task definitions at a team's scale (prefect#16485, #15865): registrations do not grow with runs.

prefect-aws's own ECS worker polls a real local Prefect server and submits every run of several
deployments; AWS is moto's. benchmarks/ecs_pool_bench.py runs the same at 100 deployments and 200 runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ecs_submissions import moto_pool_template, stock_family_handling, submit_through_pool

from devtools.harness import Cluster, server_only_cluster

pytestmark = [pytest.mark.slow, pytest.mark.long]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with server_only_cluster("prefect-scale-") as local:
        yield local


def test_runs_of_many_deployments_register_per_task_size_not_per_run(cluster: Cluster, aws_env: None) -> None:
    """5 deployments (one of them bigger), 10 runs: registrations only for the 2 sizes; then 5 more
    deployments and 10 more runs, on a restarted worker: no registration at all. The same runs with
    prefect-aws's own family handling register once per deployment (the baseline).

    The worker submits a poll's runs at once, so the first runs of a size not yet registered may
    each register it (ECSWorker._get_or_register_task_definition has no lock): a few revisions, once.
    """
    template = moto_pool_template()
    first = submit_through_pool(cluster.api_url, "scale", template, deployments=5, runs=10, big_every=5)
    print(f"first batch: {dict(first.calls)}")
    assert first.calls["RunTask"] == 10
    assert first.registered_families == first.task_definitions == 2
    assert 2 <= first.calls["RegisterTaskDefinition"] < 10

    more = submit_through_pool(cluster.api_url, "scale-more", template, deployments=5, runs=10, big_every=5)
    print(f"more deployments and runs: {dict(more.calls)}")
    assert more.calls["RunTask"] == 10
    assert more.calls["RegisterTaskDefinition"] == 0

    stock = submit_through_pool(
        cluster.api_url, "stock", stock_family_handling(template), deployments=5, runs=10, big_every=5
    )
    print(f"stock prefect-aws families: {dict(stock.calls)}")
    assert stock.calls["RunTask"] == 10
    assert stock.calls["RegisterTaskDefinition"] >= 5  # at least once per deployment: what the template avoids
