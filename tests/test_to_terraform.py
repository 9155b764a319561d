"""devtools/to_terraform.py: the program's resources as the Terraform resources pulumi-aws bridges (fast, no
terraform: the rehearsal's long test, tests/test_rehearse.py, runs the provider on them).

The one table of exceptions is checked against the installed pulumi-aws (each entry's Pulumi side exists
and is really an exception); its Terraform side is checked against the provider's schema in the long test.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import pytest
from conftest import ACCOUNT, BASE_CONFIG, REGION, Run, run_program

from devtools.to_terraform import (
    TERRAFORM_NAMES,
    References,
    Translation,
    TranslationError,
    autoname,
    mechanical_type,
    property_type,
    sdk_args_class,
    sdk_invoke_function,
    snake,
    terraform_type,
    translate,
)


def test_type_tokens_map_mechanically() -> None:
    assert mechanical_type("aws:ecs/taskDefinition:TaskDefinition") == "aws_ecs_task_definition"
    assert mechanical_type("aws:cloudwatch/logMetricFilter:LogMetricFilter") == "aws_cloudwatch_log_metric_filter"
    assert (
        mechanical_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock") == "aws_s3_bucket_public_access_block"
    )
    assert mechanical_type("aws:ec2/getSubnets:getSubnets") == "aws_ec2_subnets"  # what the table corrects
    assert terraform_type("aws:ec2/getSubnets:getSubnets") == "aws_subnets"
    assert terraform_type("aws:ec2/securityGroup:SecurityGroup") == "aws_security_group"


def _pulumi_side(key: str) -> tuple[str, str | None]:
    token, _, path = key.partition(".")
    return token, path or None


@pytest.mark.parametrize("key", sorted(TERRAFORM_NAMES))
def test_each_exception_names_what_pulumi_aws_has_and_is_one(key: str) -> None:
    """The Pulumi side exists in the installed SDK (a registered resource, an invoke function, an input at that
    path), and the mechanical rule would get it wrong (else the entry is dead)."""
    token, path = _pulumi_side(key)
    invoke = token.rsplit(":", 1)[1][:1].islower()
    if path is None:
        (sdk_invoke_function(token) if invoke else sdk_args_class(token))
        assert mechanical_type(token) != TERRAFORM_NAMES[key]
    elif invoke:
        assert snake(path) in sdk_invoke_function(token).__code__.co_varnames
        assert snake(path) != TERRAFORM_NAMES[key]
    else:
        property_type(token, path)
        assert snake(path.rsplit(".", 1)[-1]) != TERRAFORM_NAMES[key]


def test_a_path_pulumi_aws_lacks_is_refused() -> None:
    with pytest.raises(TranslationError, match="capacityProviderStrategy"):
        property_type("aws:ecs/service:Service", "capacityProviderStrategy")
    with pytest.raises(TranslationError, match="registers no resource"):
        sdk_args_class("aws:ecs/serviceX:ServiceX")


@pytest.fixture(scope="module")
def default_translation(default_run: Run) -> tuple[Run, Translation]:
    return default_run, translate(default_run)


def one(translation: Translation, typ: str, logical: str = "") -> dict[str, Any]:
    (address,) = [a for a, r in translation.addresses.items() if a.startswith(f"{typ}.") and logical in r.name]
    return translation.arguments(address)


def test_every_resource_is_translated_or_listed_as_not_aws(default_translation: tuple[Run, Translation]) -> None:
    run, translation = default_translation
    aws = [r for r in run.resources if r.typ.startswith("aws:")]
    assert sorted(id(r) for r in translation.addresses.values()) == sorted(id(r) for r in aws)
    assert {r.typ for r in translation.not_aws} == {
        "docker:index/image:Image",
        "pulumi-python:dynamic/prefect:WorkPool",
        "pulumi-python:dynamic/prefect:Automation",
    }


def test_the_mocks_record_each_inputs_dependencies_as_the_engine_gets_them(default_run: Run) -> None:
    service = default_run.one("aws:ecs/service:Service")
    task = default_run.one("aws:ecs/taskDefinition:TaskDefinition")
    assert service.urn.endswith("::prefect-worker-svc") and task.urn.endswith("::prefect-worker-task")
    assert service.property_dependencies["taskDefinition"] == [task.urn]
    assert task.urn in service.dependencies


def test_references_follow_the_programs_own_dependencies(default_translation: tuple[Run, Translation]) -> None:
    _, translation = default_translation
    service = one(translation, "aws_ecs_service")
    assert re.fullmatch(r"\$\{aws_ecs_task_definition\.[\w-]+\.arn\}", service["task_definition"])
    assert re.fullmatch(r"\$\{aws_ecs_cluster\.[\w-]+\.arn\}", service["cluster"])
    assert service["network_configuration"]["subnets"] == "${data.aws_subnets.get_subnets_1.ids}"
    # inside a JSON document, next to literal text
    policy = json.loads(one(translation, "aws_iam_role_policy", "task-policy")["policy"])
    assert [s["Resource"] for s in policy["Statement"]] == [
        "${aws_s3_bucket.prefect-flows-bucket.arn}",
        "${aws_s3_bucket.prefect-flows-bucket.arn}/*",
    ]
    container = json.loads(one(translation, "aws_ecs_task_definition")["container_definitions"])[0]
    (secret,) = container["secrets"]
    assert secret["valueFrom"] == (
        "${aws_secretsmanager_secret.prefect-api-key-secret.arn}:::"
        "${aws_secretsmanager_secret_version.prefect-api-key-version.version_id}"
    )
    # a dependency seen in no value still orders the graph
    assert service["depends_on"] == ["aws_ecs_cluster_capacity_providers.prefect-worker-capacity"]


def test_an_echoed_input_is_referenced_whole_and_the_image_through_the_docker_build() -> None:
    """The scaling policy names its target by the target's own `resource_id` (as the program passes it, so
    the autonamed cluster and service reach it); the task's image is the ECR repository's URL and the digest
    the (not AWS) Docker build pushed there."""
    translation = translate(run_program({**BASE_CONFIG, "minWorkers": "0", "maxWorkers": "3"}))
    policy = one(translation, "aws_appautoscaling_policy")
    assert policy["resource_id"] == "${aws_appautoscaling_target.prefect-scaling-target.resource_id}"
    assert one(translation, "aws_appautoscaling_target")["resource_id"] == (
        "service/${aws_ecs_cluster.prefect-worker-cluster.name}/${aws_ecs_service.prefect-worker-svc.name}"
    )
    container = json.loads(one(translation, "aws_ecs_task_definition")["container_definitions"])[0]
    assert re.fullmatch(
        r"\$\{aws_ecr_repository\.prefect-image-repo\.repository_url\}@sha256:[0-9a-f]{64}", container["image"]
    )


def test_the_account_and_region_stay_literal(default_translation: tuple[Run, Translation]) -> None:
    """They stand for no resource, even where a resource echoes them (the ECR registry id is the account)."""
    _, translation = default_translation
    policy = one(translation, "aws_iam_role_policy", "execution-policy")["policy"]
    assert f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:" in policy
    assert "registry_id" not in json.dumps(translation.resources)


def test_invokes_become_data_sources(default_translation: tuple[Run, Translation]) -> None:
    _, translation = default_translation
    assert translation.data == {
        "aws_vpc": {"get_vpc_0": {"default": True}},
        "aws_subnets": {
            "get_subnets_1": {
                "filter": [
                    {"name": "vpc-id", "values": ["${data.aws_vpc.get_vpc_0.id}"]},
                    {"name": "default-for-az", "values": ["true"]},
                ]
            }
        },
    }
    assert one(translation, "aws_security_group")["vpc_id"] == "${data.aws_vpc.get_vpc_0.id}"


def test_maps_keep_their_keys_and_objects_become_blocks(default_translation: tuple[Run, Translation]) -> None:
    _, translation = default_translation
    target = one(translation, "aws_cloudwatch_event_target", "stopped-tasks")
    assert "exitCode" in target["input_transformer"]["input_paths"]  # data, not a property name
    alarm = one(translation, "aws_cloudwatch_metric_alarm", "memory-high")
    assert set(alarm["dimensions"]) == {"ClusterName", "ServiceName"}
    function = one(translation, "aws_lambda_function", "controller")
    assert "BACKLOG_MAX_WORKERS" in function["environment"]["variables"]
    assert function["logging_config"]["log_format"] == "Text"
    rule = one(translation, "aws_s3_bucket_lifecycle_configuration")["rule"]
    assert rule[0]["noncurrent_version_expiration"] == {"noncurrent_days": 90}


def test_renamed_arguments_take_terraforms_names(default_translation: tuple[Run, Translation]) -> None:
    _, translation = default_translation
    assert one(translation, "aws_lambda_function", "controller")["function_name"] == "prefect-fargate-test-controller"
    assert (
        one(translation, "aws_cloudwatch_metric_alarm", "late-runs")["alarm_name"] == "prefect-fargate-test-late-runs"
    )
    assert one(translation, "aws_lambda_permission", "controller-invoke")["function_name"].startswith(
        "${aws_lambda_function."
    )
    spot = translate(run_program({**BASE_CONFIG, "workerCapacity": "FARGATE_SPOT"}))
    assert one(spot, "aws_ecs_service")["capacity_provider_strategy"] == [
        {"capacity_provider": "FARGATE_SPOT", "weight": 1}
    ]


def test_unnamed_resources_are_auto_named_as_pulumi_does(default_translation: tuple[Run, Translation]) -> None:
    run, translation = default_translation
    cluster = run.one("aws:ecs/cluster:Cluster")
    assert one(translation, "aws_ecs_cluster")["name"] == autoname(cluster)
    assert re.fullmatch(r"prefect-worker-cluster-[0-9a-f]{7}", autoname(cluster))
    other_stack = run_program(stack="other").one("aws:ecs/cluster:Cluster")
    assert autoname(other_stack) != autoname(cluster)  # each stack its own suffix, as Pulumi's random one


def test_the_functions_archive_is_the_zip_it_uploads(default_translation: tuple[Run, Translation]) -> None:
    _, translation = default_translation
    function = one(translation, "aws_lambda_function", "controller")
    names = zipfile.ZipFile(io.BytesIO(translation.files[function["filename"]])).namelist()
    assert "controller/handler.py" in names and all(n.startswith(("controller/", "alert_notifier/")) for n in names)
    assert "alert_notifier/topic.py" in names  # the alert topic's message, shared with the notifier


def test_literal_interpolations_are_escaped_and_values_referenced_longest_first() -> None:
    refs = References()
    refs.add("arn:aws:s3:::bucket-1", "aws_s3_bucket.b.arn")
    refs.add("bucket-1", "aws_s3_bucket.b.bucket")
    text, used = refs.template('{"a": "arn:aws:s3:::bucket-1/*", "b": "bucket-1", "c": "${x} %{y}"}')
    assert text == '{"a": "${aws_s3_bucket.b.arn}/*", "b": "${aws_s3_bucket.b.bucket}", "c": "$${x} %%{y}"}'
    assert used == {"aws_s3_bucket.b.arn", "aws_s3_bucket.b.bucket"}
    refs.add("ecs", "aws_appautoscaling_target.t.service_namespace", whole_only=True)
    assert refs.template("ecs") == (
        "${aws_appautoscaling_target.t.service_namespace}",
        {"aws_appautoscaling_target.t.service_namespace"},
    )
    assert refs.template("ecs:service:DesiredCount")[0] == "ecs:service:DesiredCount"  # never inside a value


def test_dropping_a_resource_drops_what_needs_it(default_translation: tuple[Run, Translation]) -> None:
    _, translation = default_translation
    (cluster,) = [a for a in translation.addresses if a.startswith("aws_ecs_cluster.")]
    needing = translation.needing({cluster})
    assert any(a.startswith("aws_ecs_service.") for a in needing)  # directly
    assert any(a.startswith("aws_cloudwatch_metric_alarm.") for a in needing)  # through the service
    assert not any(a.startswith("aws_s3_bucket") for a in needing)
    kept = translation.without({cluster} | needing)
    assert cluster not in kept.addresses and not needing & set(kept.addresses)
