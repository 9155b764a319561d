"""AgentNetwork: the default VPC by default, the user's VPC when given, never an open ingress."""

from __future__ import annotations

from typing import Any

from conftest import Run, resolve, run_pulumi, strings_in

from components.config import NetworkConfig
from components.network import AgentNetwork

VPC = "vpc-0123456789abcdef0"
SUBNETS = ("subnet-0123456789abcdef0", "subnet-0123456789abcdef1")
GROUP = "sg-0123456789abcdef0"


def network_run(config: NetworkConfig) -> tuple[Run, dict[str, Any]]:
    """Run the component and resolve what it hands to the service."""
    holder: list[AgentNetwork] = []
    run = run_pulumi(lambda: holder.append(AgentNetwork("net", config)))
    net = holder[0]
    resolved = {
        "subnets": resolve(net.subnet_ids),
        "groups": resolve(net.security_group_ids),
        "public_ip": net.assign_public_ip,
    }
    return run, resolved


def subnet_filters(run: Run) -> dict[str, list[str]]:
    (args,) = [args for token, args in run.mocks.invokes if token == "aws:ec2/getSubnets:getSubnets"]
    return {f["name"]: f["values"] for f in args["filters"]}


def test_default_vpc_default_subnets_and_an_egress_only_group() -> None:
    run, net = network_run(NetworkConfig())
    group = run.one("aws:ec2/securityGroup:SecurityGroup")
    assert net["groups"] == [group.id]
    assert not group.plain_inputs.get("ingress")
    assert [rule["protocol"] for rule in group.plain_inputs["egress"]] == ["-1"]
    assert subnet_filters(run)["default-for-az"] == ["true"]
    assert net["subnets"] == ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]
    assert net["public_ip"] is True


def test_own_vpc_uses_its_subnets() -> None:
    run, net = network_run(NetworkConfig(vpc_id=VPC, assign_public_ip=False))
    assert subnet_filters(run) == {"vpc-id": [VPC]}
    assert run.one("aws:ec2/securityGroup:SecurityGroup").plain_inputs["vpcId"] == VPC
    assert net["public_ip"] is False


def test_given_subnets_and_groups_are_used_as_they_are() -> None:
    run, net = network_run(NetworkConfig(vpc_id=VPC, subnet_ids=SUBNETS, security_group_ids=(GROUP,)))
    assert net == {"subnets": list(SUBNETS), "groups": [GROUP], "public_ip": True}
    assert run.of_type("aws:ec2/securityGroup:SecurityGroup") == []
    assert not any("getSubnets" in token or "getVpc" in token for token, _ in run.mocks.invokes)
    assert VPC not in set(strings_in([r.plain_inputs for r in run.resources]))
