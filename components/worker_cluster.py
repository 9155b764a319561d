"""WorkerCluster: the ECS cluster (with both Fargate capacity providers) and the CloudWatch log group
that the worker and its flow runs use.

Made first, before the work pool and the service: the pool's `ecs` template and the ECS worker's IAM
name the cluster, and the worker and its flow-run tasks log to the group. Needs nothing but the log
group's name (named up front, so the roles can scope to it without waiting) and its retention.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import CAPACITIES


@dataclass(frozen=True, kw_only=True)
class WorkerClusterArgs:
    """The log group's name and retention; `moved_from` keeps existing stacks' cluster and log group."""

    log_group_name: str
    log_retention_days: int
    kms_key_arn: str | None = None  # None: CloudWatch Logs' own encryption
    # URN of the component these two were children of before this one existed (AgentService): aliased,
    # so `pulumi up` on an existing stack moves them here instead of replacing them.
    moved_from: pulumi.Input[str] | None = None


class WorkerCluster(pulumi.ComponentResource):
    """ECS cluster and log group for one Prefect worker and its flow runs."""

    cluster: aws.ecs.Cluster
    """The ECS cluster the worker (and, with an `ecs` pool, each flow run) runs in."""
    capacity_providers: aws.ecs.ClusterCapacityProviders
    """FARGATE and FARGATE_SPOT on the cluster: a service or RunTask may name either only once this exists."""
    log_group: aws.cloudwatch.LogGroup
    """The CloudWatch log group of the worker and its flow-run tasks."""

    def __init__(self, name: str, args: WorkerClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:ecs:WorkerCluster", name, None, opts)
        aliases = [pulumi.Alias(parent=args.moved_from)] if args.moved_from is not None else None
        child = pulumi.ResourceOptions(parent=self, aliases=aliases)

        self.cluster = aws.ecs.Cluster(f"{name}-cluster", opts=child)
        # Both Fargate providers, so the worker and the `ecs` pool's flow-run tasks may each use either.
        self.capacity_providers = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity",
            cluster_name=self.cluster.name,
            capacity_providers=list(CAPACITIES),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=args.log_group_name,
            retention_in_days=args.log_retention_days,
            kms_key_id=args.kms_key_arn,
            opts=child,
        )
        self.register_outputs({"cluster_name": self.cluster.name, "log_group_name": self.log_group.name})
