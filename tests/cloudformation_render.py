"""Render what the program registers (under the test mocks) as a CloudFormation template, for scanners.

Scanners such as checkov read CloudFormation or Terraform, not a Pulumi program. This maps each resource
that holds data or permissions to its CloudFormation type, with the properties scanners check (pulumi-aws's
side resources, such as a bucket's encryption or a role's inline policy, folded into their owner as
CloudFormation has them). Alarms, rules and targets are left out: no scanner check reads them.

    python tests/cloudformation_render.py OUT_DIR   # writes <case>.json for each pool type, with/without a key
    checkov -d OUT_DIR --framework cloudformation
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from conftest import ACCOUNT, BASE_CONFIG, REGION, Run, run_program

CASES = {
    "process": BASE_CONFIG,
    "ecs": {**BASE_CONFIG, "workPoolType": "ecs"},
    "process-kms": {
        **BASE_CONFIG,
        "kmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    },
    "ecs-kms": {
        **BASE_CONFIG,
        "workPoolType": "ecs",
        "kmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    },
}


def pascal(value: Any) -> Any:
    """camelCase keys to CloudFormation's PascalCase, all the way down (a log driver's options are free-form)."""
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: v if k == "options" else pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal(v) for v in value]
    return value


def logical(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", name.title())


def template(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by_id = {r.id: r for r in run.resources}

    def put(resource_name: str, cfn_type: str, properties: dict[str, Any]) -> dict[str, Any]:
        out[logical(resource_name)] = {"Type": cfn_type, "Properties": properties}
        return properties

    for r in run.resources:
        i = r.plain_inputs
        if r.typ == "aws:s3/bucket:Bucket":
            put(r.name, "AWS::S3::Bucket", {"BucketName": r.id})
        elif r.typ == "aws:secretsmanager/secret:Secret":
            put(r.name, "AWS::SecretsManager::Secret", {k: v for k, v in {"KmsKeyId": i.get("kmsKeyId")}.items() if v})
        elif r.typ == "aws:cloudwatch/logGroup:LogGroup":
            props = {"LogGroupName": i["name"], "RetentionInDays": int(i["retentionInDays"])}
            put(r.name, "AWS::Logs::LogGroup", {**props, **({"KmsKeyId": i["kmsKeyId"]} if "kmsKeyId" in i else {})})
        elif r.typ == "aws:sqs/queue:Queue":
            keys = {"kmsMasterKeyId": "KmsMasterKeyId", "sqsManagedSseEnabled": "SqsManagedSseEnabled"}
            put(r.name, "AWS::SQS::Queue", {cfn: i[key] for key, cfn in keys.items() if key in i})
        elif r.typ == "aws:sns/topic:Topic":
            # The stack's own topic key by reference, as a template names a key it creates.
            own = {k.outputs["arn"]: {"Fn::GetAtt": [logical(k.name), "Arn"]} for k in run.of_type("aws:kms/key:Key")}
            put(r.name, "AWS::SNS::Topic", {"KmsMasterKeyId": own.get(i["kmsMasterKeyId"], i["kmsMasterKeyId"])})
        elif r.typ == "aws:kms/key:Key":
            put(
                r.name,
                "AWS::KMS::Key",
                {"KeyPolicy": json.loads(i["policy"]), "EnableKeyRotation": i["enableKeyRotation"]},
            )
        elif r.typ == "aws:iam/role:Role":
            put(r.name, "AWS::IAM::Role", {"AssumeRolePolicyDocument": json.loads(i["assumeRolePolicy"])})
        elif r.typ == "aws:ecr/repository:Repository":
            props = {
                "ImageTagMutability": i["imageTagMutability"],
                "ImageScanningConfiguration": pascal(i["imageScanningConfiguration"]),
            }
            put(r.name, "AWS::ECR::Repository", props)
        elif r.typ == "aws:ecs/cluster:Cluster":
            put(r.name, "AWS::ECS::Cluster", {"ClusterSettings": pascal(i.get("settings", []))})
        elif r.typ == "aws:ecs/taskDefinition:TaskDefinition":
            props = {k: i[k] for k in ("family", "cpu", "memory", "networkMode", "requiresCompatibilities")}
            put(
                r.name,
                "AWS::ECS::TaskDefinition",
                {**pascal(props), "ContainerDefinitions": pascal(json.loads(i["containerDefinitions"]))},
            )
        elif r.typ == "aws:ecs/service:Service":
            network = i["networkConfiguration"]
            vpc = {
                "AssignPublicIp": "ENABLED" if network["assignPublicIp"] else "DISABLED",
                "Subnets": network["subnets"],
            }
            put(
                r.name,
                "AWS::ECS::Service",
                {"LaunchType": i["launchType"], "NetworkConfiguration": {"AwsvpcConfiguration": vpc}},
            )
        elif r.typ == "aws:ec2/securityGroup:SecurityGroup":
            cidr_keys = {"cidrBlocks": "CidrIp", "ipv6CidrBlocks": "CidrIpv6"}
            egress = [
                {
                    "IpProtocol": rule["protocol"],
                    "FromPort": int(rule["fromPort"]),
                    "ToPort": int(rule["toPort"]),
                    "Description": rule["description"],
                    cfn: cidr,
                }
                for rule in i["egress"]
                for key, cfn in cidr_keys.items()
                for cidr in rule.get(key, [])
            ]
            put(
                r.name,
                "AWS::EC2::SecurityGroup",
                {"GroupDescription": i["description"], "VpcId": i["vpcId"], "SecurityGroupEgress": egress},
            )
        elif r.typ == "aws:s3/bucketPolicy:BucketPolicy":
            put(r.name, "AWS::S3::BucketPolicy", {"Bucket": i["bucket"], "PolicyDocument": json.loads(i["policy"])})
    # Side resources, folded into their owner as CloudFormation holds them.
    for r in run.resources:
        i = r.plain_inputs
        if r.typ == "aws:iam/rolePolicy:RolePolicy":
            role = next(x for x in run.of_type("aws:iam/role:Role") if x.id == i["role"] or x.name == i["role"])
            policies = out[logical(role.name)]["Properties"].setdefault("Policies", [])
            policies.append({"PolicyName": r.name, "PolicyDocument": json.loads(i["policy"])})
        elif r.typ.startswith("aws:s3/bucket") and r.typ != "aws:s3/bucketPolicy:BucketPolicy" and "bucket" in i:
            bucket = out[logical(by_id[i["bucket"]].name)]["Properties"]
            if r.typ.endswith("ServerSideEncryptionConfiguration"):
                rules = [
                    {
                        "ServerSideEncryptionByDefault": {
                            cfn: rule["applyServerSideEncryptionByDefault"][key]
                            for key, cfn in (("sseAlgorithm", "SSEAlgorithm"), ("kmsMasterKeyId", "KMSMasterKeyID"))
                            if key in rule["applyServerSideEncryptionByDefault"]
                        },
                        "BucketKeyEnabled": rule["bucketKeyEnabled"],
                    }
                    for rule in i["rules"]
                ]
                bucket["BucketEncryption"] = {"ServerSideEncryptionConfiguration": rules}
            elif r.typ.endswith("BucketVersioning"):
                bucket["VersioningConfiguration"] = {"Status": i["versioningConfiguration"]["status"]}
            elif r.typ.endswith("BucketPublicAccessBlock"):
                bucket["PublicAccessBlockConfiguration"] = pascal({k: v for k, v in i.items() if k != "bucket"})
            elif r.typ.endswith("BucketLifecycleConfiguration"):
                bucket["LifecycleConfiguration"] = {
                    "Rules": [{"Id": rule["id"], "Status": rule["status"]} for rule in i["rules"]]
                }
    return {"AWSTemplateFormatVersion": "2010-09-09", "Resources": out}


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    for case, config in CASES.items():
        (target / f"{case}.json").write_text(json.dumps(template(run_program(config)), indent=2))
