"""PrefectWorker: the whole stack, composed from one component per AWS concern.

AgentImage, FlowStorage, ApiKeySecret, AgentNetwork, AgentRoles, AgentService and the Prefect
WorkPool, wired together from the validated StackConfig; for an `ecs` pool also EcsPoolRoles (the
flow-run task role and the worker's ECS permissions).
Unless config `alarms` is false, Alerts watches the worker service (topic output `alertTopicArn`).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from components.agent_image import AgentImage, AgentImageArgs
from components.agent_roles import AgentRoles, AgentRolesArgs
from components.agent_service import FLOW_RUN_ENVIRONMENT, AgentService, AgentServiceArgs
from components.alerts import Alerts, AlertsArgs
from components.api_key_secret import ApiKeySecret, ApiKeySecretArgs
from components.config import StackConfig
from components.ecs_pool_roles import EcsPoolRoles, EcsPoolRolesArgs
from components.flow_storage import FlowStorage
from components.job_templates import ecs_base_job_template, flow_run_family_prefix, process_base_job_template
from components.network import AgentNetwork
from components.work_pool import WorkPool, WorkPoolArgs


class PrefectWorker(pulumi.ComponentResource):
    """A Prefect worker on ECS Fargate, pulling flow code from its own S3 bucket."""

    image: AgentImage
    storage: FlowStorage
    api_key: ApiKeySecret
    network: AgentNetwork
    roles: AgentRoles
    service: AgentService
    ecs_roles: EcsPoolRoles | None
    work_pool: WorkPool
    alerts: Alerts | None

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
                worker_runs_flows=args.work_pool_type == "process",
            ),
            opts=child,
        )
        self.ecs_roles = None
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
                worker_type=args.work_pool_type,
                capacity=args.worker_capacity,
                before_service=lambda cluster, log_group: self._work_pool(name, args, cluster, log_group),
            ),
            opts=child,
        )
        self.alerts = self._alerts(name, args) if args.alarms else None
        self.register_outputs(self.stack_outputs(args))

    def _alerts(self, name: str, args: StackConfig) -> Alerts:
        """The alert topic and alarms on the worker service (config `alarms`, on by default)."""
        return Alerts(
            f"{name}-alerts",
            AlertsArgs(
                cluster_name=self.service.cluster.name,
                cluster_arn=self.service.cluster.arn,
                service_name=self.service.service.name,
                desired_count=args.desired_count,
                log_retention_days=args.log_retention_days,
                alarm_prefix=f"prefect-fargate-{pulumi.get_stack()}",
                alert_email=args.alert_email,
                dead_letter_queue_name=None,  # the `ecs` observer's DLQ, once the stack creates it
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _work_pool(
        self, name: str, args: StackConfig, cluster: aws.ecs.Cluster, log_group: aws.cloudwatch.LogGroup
    ) -> list[pulumi.Resource]:
        """The work pool, and for `ecs` its IAM: made before the workers start (see AgentServiceArgs)."""
        child = pulumi.ResourceOptions(parent=self)
        if args.work_pool_type == "ecs":
            self.ecs_roles = EcsPoolRoles(
                f"{name}-ecs-pool",
                EcsPoolRolesArgs(
                    bucket_arn=self.storage.bucket_arn,
                    worker_task_role_name=self.roles.task_role.name,
                    execution_role_arn=self.roles.execution_role.arn,
                    cluster_arn=cluster.arn,
                    cluster_name=cluster.name,
                    log_group_name=log_group.name,
                    family_prefix=flow_run_family_prefix(pulumi.get_project(), pulumi.get_stack()),
                ),
                opts=child,
            )
        self.work_pool = WorkPool(
            f"{name}-work-pool",
            WorkPoolArgs(
                name=args.work_pool,
                type=args.work_pool_type,
                base_job_template=self._base_job_template(args, cluster, log_group),
                concurrency_limit=args.work_pool_concurrency,
                prefect_api_url=args.prefect_api_url,
                prefect_api_key=args.prefect_api_key,
            ),
            opts=child,
        )
        return [self.work_pool, *([self.ecs_roles] if self.ecs_roles else [])]

    def _base_job_template(
        self, args: StackConfig, cluster: aws.ecs.Cluster, log_group: aws.cloudwatch.LogGroup
    ) -> pulumi.Input[dict[str, Any]]:
        """The pool's template: Prefect's own for `process`; for `ecs`, prefect-aws's filled from the stack."""
        if self.ecs_roles is None:
            return process_base_job_template()
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        return pulumi.Output.all(
            cluster_arn=cluster.arn,
            vpc_id=self.network.vpc_id,
            subnet_ids=self.network.subnet_ids,
            security_group_ids=self.network.security_group_ids,
            execution_role_arn=self.roles.execution_role.arn,
            task_role_arn=self.ecs_roles.flow_run_role.arn,
            image=self.image.image_uri,
            log_group_name=log_group.name,
            region=region,
            api_key_value_from=self.api_key.value_from,
        ).apply(
            lambda v: ecs_base_job_template(
                **v,
                assign_public_ip=self.network.assign_public_ip,
                cpu=args.flow_run_size.cpu,
                memory=args.flow_run_size.memory,
                cpu_architecture=args.cpu_architecture,
                flow_run_env=FLOW_RUN_ENVIRONMENT,
                family_prefix=flow_run_family_prefix(pulumi.get_project(), pulumi.get_stack()),
                capacity=args.flow_run_capacity,
            )
        )

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
            "workPoolType": args.work_pool_type,
            "prefectApiUrl": args.prefect_api_url,
            **({"flowRunRoleArn": self.ecs_roles.flow_run_role.arn} if self.ecs_roles else {}),
            **({"alertTopicArn": self.alerts.topic.arn} if self.alerts else {}),
        }
