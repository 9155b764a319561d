"""PrefectWorker: the whole stack, composed from one component per AWS concern, top to bottom.

AgentImage, FlowStorage, CredentialSecret, AgentNetwork, WorkerCluster, AgentRoles, (for an `ecs` pool)
EcsPoolRoles with the flow-run task role and the worker's ECS permissions, the Prefect WorkPool, and
last AgentService, whose workers start once the pool is configured. Wired from the validated StackConfig.
Unless config `alarms` is false, Alerts watches the worker service and the controller (topic output
`alertTopicArn`). StackController recovers the pool's runs whose worker is gone (every minute; RunAutomations
backs it up for stuck Pending runs) and, with the topic, publishes each of the pool's failed or crashed runs to
it: Alerts comes first, naming the controller's function and schedule by the names they will have
(`function_name`), and the controller gets the topic. With `prefectNotifyBlock` RunNotifications tells that
block (Slack, say) about failed runs and (unless it scales to zero) a pool without a worker.
The controller also publishes the pool's backlog (controller/backlog.py); with minWorkers/maxWorkers
WorkerScaling makes the service follow it, and StackDashboard shows it all (output `dashboardUrl`).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pulumi
import pulumi_aws as aws

from components.agent_image import AgentImage, AgentImageArgs
from components.agent_roles import AgentRoles, AgentRolesArgs, Statement, arn_context
from components.agent_service import (
    FLOW_HEARTBEAT_SECONDS,
    FLOW_RUN_ENVIRONMENT,
    AgentService,
    AgentServiceArgs,
    run_limit,
)
from components.alert_notifier import notifier_function_name, publish_statements
from components.alerts import Alerts, AlertsArgs, BacklogAlarms, failed_run_notice_environment
from components.api_key_secret import CredentialSecret, CredentialSecretArgs
from components.config import StackConfig
from components.ecs_pool_roles import EcsPoolRoles, EcsPoolRolesArgs
from components.ecs_task_events import EcsTaskEvents, EcsTaskEventsArgs, observer_queue_name
from components.flow_storage import FlowStorage
from components.job_templates import ecs_base_job_template, flow_run_family_prefix, process_base_job_template
from components.kms import key_policy_statements
from components.network import AgentNetwork
from components.run_automations import RunAutomations, RunAutomationsArgs
from components.run_notifications import RunNotifications, RunNotificationsArgs
from components.stack_controller import ControllerVpc, StackController, StackControllerArgs, function_name
from components.stack_dashboard import StackDashboard, StackDashboardArgs
from components.work_pool import WorkPool, WorkPoolArgs
from components.worker_cluster import WorkerCluster, WorkerClusterArgs
from components.worker_scaling import (
    WorkerScaling,
    WorkerScalingArgs,
    backlog_namespace,
    controller_environment,
    put_metric_statement,
)


def stack_prefix() -> str:
    """`prefect-fargate-<stack>`: what the stack's alarms and dashboard are named by, and its notices signed with."""
    return f"prefect-fargate-{pulumi.get_stack()}"


def backlog_environment(args: StackConfig) -> dict[str, pulumi.Input[str]]:
    """The controller's backlog job settings: the fixed count (min = max) unless minWorkers/maxWorkers are set."""
    low, high = (
        (args.scaling.min_workers, args.scaling.max_workers)
        if args.scaling
        else (args.desired_count, args.desired_count)
    )
    return controller_environment(
        namespace=backlog_namespace(pulumi.get_stack()),
        run_limit=run_limit(args.size.memory),
        min_workers=low,
        max_workers=high,
        lead_minutes=args.scale_lead_minutes,
    )


class PrefectWorker(pulumi.ComponentResource):
    """A Prefect worker on ECS Fargate, pulling flow code from its own S3 bucket."""

    image: AgentImage
    storage: FlowStorage
    api_key: CredentialSecret | None  # the API key or auth string; None: a server without authentication
    network: AgentNetwork
    cluster: WorkerCluster
    roles: AgentRoles
    ecs_roles: EcsPoolRoles | None
    task_events: EcsTaskEvents | None
    work_pool: WorkPool
    service: AgentService
    alerts: Alerts | None
    automations: RunAutomations
    controller: StackController
    notifications: RunNotifications | None  # config prefectNotifyBlock (and alarms)
    scaling: WorkerScaling | None  # config minWorkers/maxWorkers
    dashboard: StackDashboard

    def __init__(self, name: str, args: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:index:PrefectWorker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        log_group_name = f"/prefect-fargate/{pulumi.get_stack()}/{name}"
        observer_queue = observer_queue_name(pulumi.get_stack(), name)

        self.image = AgentImage(
            f"{name}-image", AgentImageArgs(platform=args.docker_platform, given=args.worker_image), opts=child
        )
        self.storage = FlowStorage(f"{name}-flows", kms_key_arn=args.kms_key_arn, opts=child)
        credential = args.prefect_credential
        self.api_key = (
            CredentialSecret(
                # The key's name is the one stacks made before the auth string already hold.
                f"{name}-api-key" if credential.env_name == "PREFECT_API_KEY" else f"{name}-api-auth-string",
                CredentialSecretArgs(
                    value=credential.value, env_name=credential.env_name, kms_key_arn=args.kms_key_arn
                ),
                opts=child,
            )
            if credential is not None
            else None
        )
        self.network = AgentNetwork(f"{name}-network", args.network, opts=child)
        self.cluster = WorkerCluster(
            f"{name}-worker",
            WorkerClusterArgs(
                log_group_name=log_group_name,
                log_retention_days=args.log_retention_days,
                kms_key_arn=args.kms_key_arn,
                # Stacks made before WorkerCluster existed hold these under the AgentService of the same name.
                moved_from=pulumi.create_urn(f"{name}-worker", AgentService.TYPE, parent=self),
            ),
            opts=child,
        )
        self.roles = AgentRoles(
            f"{name}-roles",
            AgentRolesArgs(
                repository_arn=self.image.repository_arn,
                registry_credentials_arn=self.image.registry_credentials_arn,
                log_group_name=log_group_name,
                secret_arn=self.api_key.secret_arn if self.api_key else None,
                bucket_arn=self.storage.bucket_arn,
                worker_runs_flows=args.work_pool_type == "process",
                kms_key_arn=args.kms_key_arn,
            ),
            opts=child,
        )
        self.task_events = (
            EcsTaskEvents(
                f"{name}-ecs-events",
                EcsTaskEventsArgs(
                    cluster_arn=self.cluster.cluster.arn, queue_name=observer_queue, kms_key_arn=args.kms_key_arn
                ),
                opts=child,
            )
            if args.work_pool_type == "ecs"
            else None
        )
        self.ecs_roles = (
            EcsPoolRoles(
                f"{name}-ecs-pool",
                EcsPoolRolesArgs(
                    bucket_arn=self.storage.bucket_arn,
                    worker_task_role_name=self.roles.task_role.name,
                    execution_role_arn=self.roles.execution_role.arn,
                    cluster_arn=self.cluster.cluster.arn,
                    cluster_name=self.cluster.cluster.name,
                    log_group_name=self.cluster.log_group.name,
                    observer_queue_arn=self.task_events.queue.arn,
                    family_prefix=flow_run_family_prefix(pulumi.get_project(), pulumi.get_stack()),
                    kms_key_arn=args.kms_key_arn,
                ),
                opts=child,
            )
            if args.work_pool_type == "ecs"
            else None
        )
        self.work_pool = WorkPool(
            f"{name}-work-pool",
            WorkPoolArgs(
                name=args.work_pool,
                type=args.work_pool_type,
                base_job_template=self._base_job_template(args),
                concurrency_limit=args.work_pool_concurrency,
                prefect_api_url=args.prefect_api_url,
                prefect_credential=args.prefect_credential,
            ),
            opts=child,
        )
        self.service = AgentService(
            f"{name}-worker",
            AgentServiceArgs(
                image=self.image.image_uri,
                execution_role_arn=self.roles.execution_role.arn,
                task_role_arn=self.roles.task_role.arn,
                api_key_value_from=self.api_key.value_from if self.api_key else None,
                credential_env=self.api_key.env_name if self.api_key else "PREFECT_API_KEY",
                prefect_api_url=args.prefect_api_url,
                work_pool=args.work_pool,
                log_level=args.log_level,
                cluster_arn=self.cluster.cluster.arn,
                log_group_name=self.cluster.log_group.name,
                size=args.size,
                cpu_architecture=args.cpu_architecture,
                desired_count=args.always_on_workers,
                scaled=args.scaling is not None,
                subnet_ids=self.network.subnet_ids,
                security_group_ids=self.network.security_group_ids,
                assign_public_ip=self.network.assign_public_ip,
                worker_type=args.work_pool_type,
                capacity=args.worker_capacity,
                # The observer gives up for good on a queue that does not exist yet when the worker starts.
                needs=[
                    self.work_pool,
                    self.cluster.capacity_providers,
                    *(need for need in (self.ecs_roles, self.task_events) if need is not None),
                ],
                observer_queue_name=observer_queue if args.work_pool_type == "ecs" else None,
                repository_credentials_arn=self.image.registry_credentials_arn,
            ),
            opts=child,
        )
        self.automations = RunAutomations(
            f"{name}-automations",
            RunAutomationsArgs(
                pool_name=args.work_pool,
                stuck_after=timedelta(minutes=args.stuck_run_minutes),
                prefect_api_url=args.prefect_api_url,
                prefect_credential=args.prefect_credential,
            ),
            opts=child,
        )
        self.alerts = self._alerts(name, args) if args.alarms else None
        self.controller = StackController(
            f"{name}-controller",
            StackControllerArgs(
                prefect_api_url=args.prefect_api_url,
                credential_secret_arn=self.api_key.secret_arn if self.api_key else None,
                credential_env=self.api_key.env_name if self.api_key else "PREFECT_API_KEY",
                pool_name=args.work_pool,
                pool_type=args.work_pool_type,
                cluster_arn=self.cluster.cluster.arn,
                cluster_name=self.cluster.cluster.name,
                heartbeat_seconds=FLOW_HEARTBEAT_SECONDS,
                stuck_after=timedelta(minutes=args.stuck_run_minutes),
                log_retention_days=args.log_retention_days,
                retry_crashed_runs=args.retry_crashed_runs,
                kms_key_arn=args.kms_key_arn,
                vpc=ControllerVpc(
                    subnet_ids=self.network.subnet_ids, security_group_ids=self.network.security_group_ids
                )
                if args.controller_in_vpc
                else None,
                environment={**backlog_environment(args), **self._notice_environment()},
                extra_policy_statements=[
                    put_metric_statement(backlog_namespace(pulumi.get_stack())),
                    *self._notice_statements(args),
                ],
            ),
            opts=child,
        )
        self.notifications = (
            RunNotifications(
                f"{name}-notifications",
                RunNotificationsArgs(
                    pool_name=args.work_pool,
                    notify_block=args.prefect_notify_block,
                    always_on_workers=args.always_on_workers,
                    prefect_api_url=args.prefect_api_url,
                    prefect_credential=args.prefect_credential,
                ),
                opts=child,
            )
            if args.prefect_notify_block  # only with alarms on (components/config/alerts.py refuses it otherwise)
            else None
        )
        self.scaling = (
            WorkerScaling(
                f"{name}-scaling",
                WorkerScalingArgs(
                    cluster_name=self.cluster.cluster.name,
                    service_name=self.service.service.name,
                    task_role_name=self.roles.task_role.name,
                    min_workers=args.scaling.min_workers,
                    max_workers=args.scaling.max_workers,
                    namespace=backlog_namespace(pulumi.get_stack()),
                    work_pool=args.work_pool,
                    alarm_prefix=stack_prefix(),
                ),
                opts=child,
            )
            if args.scaling is not None
            else None
        )
        self.dashboard = StackDashboard(
            f"{name}-dashboard",
            StackDashboardArgs(
                dashboard_name=stack_prefix(),
                cluster_name=self.cluster.cluster.name,
                service_name=self.service.service.name,
                namespace=backlog_namespace(pulumi.get_stack()),
                work_pool=args.work_pool,
                stopped_tasks_rule_name=self.alerts.stopped_tasks_rule.name if self.alerts else None,
                dead_letter_queue_name=self.task_events.dead_letter_queue.name if self.task_events else None,
            ),
            opts=child,
        )
        self.register_outputs(self.stack_outputs(args))

    def _alerts(self, name: str, args: StackConfig) -> Alerts:
        """The alert topic and alarms on the worker service (config `alarms`, on by default)."""
        return Alerts(
            f"{name}-alerts",
            AlertsArgs(
                cluster_name=self.cluster.cluster.name,
                cluster_arn=self.cluster.cluster.arn,
                service_name=self.service.service.name,
                desired_count=args.always_on_workers,
                log_retention_days=args.log_retention_days,
                alarm_prefix=stack_prefix(),
                alert_email=args.alert_email,
                dead_letter_queue_name=self.task_events.dead_letter_queue.name if self.task_events else None,
                kms_key_arn=args.kms_key_arn,
                backlog=BacklogAlarms(
                    namespace=backlog_namespace(pulumi.get_stack()),
                    work_pool=args.work_pool,
                    late_run_minutes=args.late_run_minutes,
                ),
                # The controller is made after the alerts (it publishes to their topic): its names, known up front.
                controller_function_name=function_name(pulumi.get_stack()),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _notice_environment(self) -> dict[str, pulumi.Input[str]]:
        """Where the controller publishes failed-run notices (controller/notify.py); none without the topic."""
        if self.alerts is None:
            return {}
        return failed_run_notice_environment(
            topic_arn=self.alerts.topic.arn,
            alarm_prefix=stack_prefix(),
            worker_log_group=self.cluster.log_group.name,
        )

    def _notice_statements(self, args: StackConfig) -> list[Statement]:
        """sns:Publish on exactly the alert topic (and its key through SNS with kmsKeyArn), as the notifier has."""
        return publish_statements(self, self.alerts.topic.arn, args.kms_key_arn) if self.alerts else []

    def _base_job_template(self, args: StackConfig) -> pulumi.Input[dict[str, Any]]:
        """The pool's template: Prefect's own for `process`; for `ecs`, prefect-aws's filled from the stack."""
        if self.ecs_roles is None:
            return process_base_job_template()
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        return pulumi.Output.all(
            cluster_arn=self.cluster.cluster.arn,
            vpc_id=self.network.vpc_id,
            subnet_ids=self.network.subnet_ids,
            security_group_ids=self.network.security_group_ids,
            execution_role_arn=self.roles.execution_role.arn,
            task_role_arn=self.ecs_roles.flow_run_role.arn,
            image=self.image.image_uri,
            log_group_name=self.cluster.log_group.name,
            region=region,
            api_key_value_from=self.api_key.value_from if self.api_key else None,
        ).apply(
            lambda v: ecs_base_job_template(
                **v,
                assign_public_ip=self.network.assign_public_ip,
                cpu=args.flow_run_size.cpu,
                memory=args.flow_run_size.memory,
                cpu_architecture=args.cpu_architecture,
                flow_run_env=FLOW_RUN_ENVIRONMENT,
                repository_credentials_arn=self.image.registry_credentials_arn,
                family_prefix=flow_run_family_prefix(pulumi.get_project(), pulumi.get_stack()),
                capacity=args.flow_run_capacity,
                credential_env=self.api_key.env_name if self.api_key else "PREFECT_API_KEY",
            )
        )

    def stack_outputs(self, args: StackConfig) -> dict[str, pulumi.Input[str]]:
        """The stack's exports; none of them carries the API key."""
        return {
            "imageUri": self.image.image_uri,
            "repositoryUrl": self.image.repository_url,
            "clusterName": self.cluster.cluster.name,
            "serviceName": self.service.service.name,
            "taskDefinitionArn": self.service.task_definition.arn,
            "logGroupName": self.cluster.log_group.name,
            "flowBucketName": self.storage.bucket_name,
            **({"apiKeySecretArn": self.api_key.secret_arn} if self.api_key else {}),
            "workPool": args.work_pool,
            "workPoolType": args.work_pool_type,
            "prefectApiUrl": args.prefect_api_url,
            **({"flowRunRoleArn": self.ecs_roles.flow_run_role.arn} if self.ecs_roles else {}),
            **({"alertTopicArn": self.alerts.topic.arn} if self.alerts else {}),
            "dashboardUrl": self.dashboard.url,
            **({"kmsKeyPolicyStatements": self._key_policy_statements()} if args.kms_key_arn else {}),
        }

    def _key_policy_statements(self) -> pulumi.Output[str]:
        """What the user's key policy must allow for this stack, known at preview (docs/security.md)."""
        account, partition, region = arn_context(self)
        return pulumi.Output.all(partition, region, account).apply(
            lambda v: json.dumps(
                key_policy_statements(
                    partition=v[0],
                    region=v[1],
                    account=v[2],
                    stack=pulumi.get_stack(),
                    ecs_pool=self.task_events is not None,
                    functions=[
                        function_name(pulumi.get_stack()),
                        *([notifier_function_name(pulumi.get_stack())] if self.alerts else []),
                    ],
                ),
                indent=2,
            )
        )
