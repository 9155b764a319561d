"""PrefectWorker: the whole stack, composed from one component per AWS concern.

AgentImage, FlowStorage, ApiKeySecret, AgentNetwork, AgentRoles and AgentService, wired together
from the validated StackConfig.
"""

from __future__ import annotations

import pulumi

from components.agent_image import AgentImage, AgentImageArgs
from components.agent_roles import AgentRoles, AgentRolesArgs
from components.agent_service import AgentService, AgentServiceArgs
from components.api_key_secret import ApiKeySecret, ApiKeySecretArgs
from components.config import StackConfig
from components.flow_storage import FlowStorage
from components.network import AgentNetwork


class PrefectWorker(pulumi.ComponentResource):
    """A Prefect worker on ECS Fargate, pulling flow code from its own S3 bucket."""

    image: AgentImage
    storage: FlowStorage
    api_key: ApiKeySecret
    network: AgentNetwork
    roles: AgentRoles
    service: AgentService

    def __init__(self, name: str, args: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:index:PrefectWorker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        log_group_name = f"/prefect-fargate/{pulumi.get_stack()}/{name}"

        self.image = AgentImage(
            f"{name}-image",
            AgentImageArgs(prefect_version=args.prefect_version, platform=args.docker_platform),
            opts=child,
        )
        self.storage = FlowStorage(f"{name}-flows", opts=child)
        self.api_key = ApiKeySecret(f"{name}-api-key", ApiKeySecretArgs(api_key=args.prefect_api_key), opts=child)
        self.network = AgentNetwork(f"{name}-network", args.network, opts=child)
        self.roles = AgentRoles(
            f"{name}-roles",
            AgentRolesArgs(
                repository_arn=self.image.repository.arn,
                log_group_name=log_group_name,
                secret_arn=self.api_key.secret_arn,
                bucket_arn=self.storage.bucket_arn,
            ),
            opts=child,
        )
        self.service = AgentService(
            f"{name}-worker",
            AgentServiceArgs(
                image=self.image.image_uri,
                execution_role_arn=self.roles.execution_role.arn,
                task_role_arn=self.roles.task_role.arn,
                api_key_value_from=self.api_key.value_from,
                prefect_api_url=args.prefect_api_url,
                work_pool=args.work_pool,
                log_level=args.log_level,
                log_group_name=log_group_name,
                log_retention_days=args.log_retention_days,
                size=args.size,
                cpu_architecture=args.cpu_architecture,
                desired_count=args.desired_count,
                subnet_ids=self.network.subnet_ids,
                security_group_ids=self.network.security_group_ids,
                assign_public_ip=self.network.assign_public_ip,
            ),
            opts=child,
        )
        self.register_outputs(self.stack_outputs(args))

    def stack_outputs(self, args: StackConfig) -> dict[str, pulumi.Input[str]]:
        """The stack's exports; none of them carries the API key."""
        return {
            "imageUri": self.image.image_uri,
            "repositoryUrl": self.image.repository_url,
            "clusterName": self.service.cluster.name,
            "serviceName": self.service.service.name,
            "taskDefinitionArn": self.service.task_definition.arn,
            "logGroupName": self.service.log_group.name,
            "flowBucketName": self.storage.bucket_name,
            "apiKeySecretArn": self.api_key.secret_arn,
            "workPool": args.work_pool,
            "prefectApiUrl": args.prefect_api_url,
        }
