"""FlowStorage: private, encrypted, versioned and TLS-only."""

from __future__ import annotations

import pytest
from conftest import Run, run_pulumi

from components.flow_storage import FlowStorage


@pytest.fixture(scope="module")
def storage_run() -> Run:
    return run_pulumi(lambda: FlowStorage("flows"))


def test_public_access_is_blocked(storage_run: Run) -> None:
    block = storage_run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").plain_inputs
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    assert all(block[flag] is True for flag in flags)


def test_encrypted_and_versioned(storage_run: Run) -> None:
    bucket = storage_run.one("aws:s3/bucket:Bucket").outputs["bucket"]
    (rule,) = storage_run.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")\
        .plain_inputs["rules"]  # fmt: skip
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")
    versioning = storage_run.one("aws:s3/bucketVersioning:BucketVersioning").plain_inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    assert versioning["bucket"] == bucket


def test_policy_refuses_plain_http(storage_run: Run) -> None:
    bucket_arn = storage_run.one("aws:s3/bucket:Bucket").outputs["arn"]
    (statement,) = storage_run.one("aws:s3/bucketPolicy:BucketPolicy").json_input("policy")["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "s3:*"
    assert set(statement["Resource"]) == {bucket_arn, f"{bucket_arn}/*"}
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_old_versions_expire(storage_run: Run) -> None:
    (rule,) = storage_run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").plain_inputs["rules"]
    assert rule["status"] == "Enabled"
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 90  # docs/how-it-works.md's promise (FlowStorage)
