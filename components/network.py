"""AgentNetwork: where the worker tasks run.

Uses the configured VPC and subnets, or the account's default VPC and its default subnets; creates
an egress-only security group unless groups are given. The worker only makes outbound calls
(Prefect API, ECR, S3, Secrets Manager, CloudWatch), so nothing may reach it.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.config import NetworkConfig


class AgentNetwork(pulumi.ComponentResource):
    """Subnets and security groups for the worker's tasks."""

    vpc_id: pulumi.Output[str]
    """The VPC the tasks run in."""
    subnet_ids: pulumi.Output[list[str]]
    """Subnets the tasks are placed in."""
    security_group_ids: pulumi.Output[list[str]]
    """Security groups of the tasks."""
    assign_public_ip: bool
    """Whether tasks get a public IP (needed in subnets without a NAT)."""

    def __init__(self, name: str, args: NetworkConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:network:AgentNetwork", name, None, opts)
        invoke = pulumi.InvokeOutputOptions(parent=self)

        if args.vpc_id:
            self.vpc_id = pulumi.Output.from_input(args.vpc_id)
        else:
            self.vpc_id = aws.ec2.get_vpc_output(default=True, opts=invoke).id

        if args.subnet_ids:
            self.subnet_ids = pulumi.Output.from_input(list(args.subnet_ids))
        else:
            filters = [aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[self.vpc_id])]
            if not args.vpc_id:
                filters.append(aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"]))
            self.subnet_ids = aws.ec2.get_subnets_output(filters=filters, opts=invoke).ids

        if args.security_group_ids:
            self.security_group_ids = pulumi.Output.from_input(list(args.security_group_ids))
        else:
            group = aws.ec2.SecurityGroup(
                f"{name}-egress-only",
                description="Prefect worker: outbound only",
                vpc_id=self.vpc_id,
                egress=[
                    aws.ec2.SecurityGroupEgressArgs(
                        description="Prefect API, ECR, S3, Secrets Manager, CloudWatch Logs",
                        protocol="-1",
                        from_port=0,
                        to_port=0,
                        cidr_blocks=["0.0.0.0/0"],
                        ipv6_cidr_blocks=["::/0"],
                    )
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.security_group_ids = group.id.apply(lambda group_id: [group_id])

        self.assign_public_ip = args.assign_public_ip
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "subnet_ids": self.subnet_ids,
                "security_group_ids": self.security_group_ids,
            }
        )
