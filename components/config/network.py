"""Where the worker and the stack controller run: vpcId, subnetIds, securityGroupIds, assignPublicIp and
controllerInVpc, checked together because a private subnet without a NAT reaches nothing."""

from __future__ import annotations

from dataclasses import dataclass

from components.config.reader import AWS_ID, NAMESPACE, Reader, set_command


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """Where the worker runs; empty fields mean the account's default VPC and a new egress-only group."""

    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    assign_public_ip: bool = True


def read_network(r: Reader) -> NetworkConfig:
    vpc_id = r.string("vpcId", "", lambda v: bool(AWS_ID["vpc"].match(v)), "a vpc-... id", "vpc-0123456789abcdef0")
    subnet_ids = r.id_list("subnetIds", "subnet")
    security_group_ids = r.id_list("securityGroupIds", "sg")
    assign_public_ip = r.boolean("assignPublicIp", True)
    vpc_fix = set_command("vpcId", "vpc-0123456789abcdef0")
    for key, given in (("subnetIds", subnet_ids), ("securityGroupIds", security_group_ids)):
        if given and not vpc_id:
            r.fail(key, "is set but vpcId is not", f"{key} together with the vpcId they belong to", vpc_fix)
    if not vpc_id and not assign_public_ip:
        r.fail(
            "assignPublicIp",
            "is false in the default VPC, whose subnets have no NAT: the worker could not reach ECR or the Prefect API",
            "true in the default VPC; false only with vpcId and private subnetIds that route through a NAT",
            set_command("assignPublicIp", "true"),
        )
    return NetworkConfig(
        vpc_id=vpc_id or None,
        subnet_ids=subnet_ids,
        security_group_ids=security_group_ids,
        assign_public_ip=assign_public_ip,
    )


def read_controller_in_vpc(r: Reader, network: NetworkConfig) -> bool:
    """controllerInVpc: the controller runs in the stack's subnets, for an API reachable only from the VPC. A Lambda
    function in a VPC never gets a public IP ("Giving Lambda functions access to resources in an Amazon VPC"), so
    it reaches Secrets Manager, ECS and CloudWatch only through a NAT gateway (or VPC endpoints): private subnets
    named explicitly, as assignPublicIp false already means for the worker. Off (the default), it runs outside any
    VPC, which is what a Prefect Cloud stack needs."""
    key = "controllerInVpc"
    in_vpc = r.boolean(key, False)
    if in_vpc and not (network.vpc_id and network.subnet_ids and not network.assign_public_ip):
        r.fail(
            key,
            "is true but the stack has no private subnets of its own (it needs vpcId, subnetIds and assignPublicIp "
            "false): a function in a VPC gets no public IP, so in public or default subnets it could reach nothing",
            "true only with vpcId, private subnetIds routed through a NAT gateway, and assignPublicIp false",
            f"{set_command('vpcId', 'vpc-0123456789abcdef0')} && pulumi config set --path "
            f"'{NAMESPACE}:subnetIds[0]' subnet-0123456789abcdef0 && {set_command('assignPublicIp', 'false')}  "
            f"(or: pulumi config rm {NAMESPACE}:{key})",
        )
        return False
    return in_vpc
