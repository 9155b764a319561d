"""FlowStorage: the private S3 bucket that holds flow code for workers to pull.

Creates the bucket with public access blocked, default encryption, versioning (old versions expire),
and a policy that refuses any request not made over TLS.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

NONCURRENT_VERSION_DAYS = 90


def deny_insecure_transport(bucket_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """A bucket policy that refuses plain-HTTP access to the bucket and its objects."""
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class FlowStorage(pulumi.ComponentResource):
    """Private, encrypted, versioned, TLS-only bucket for flow code."""

    bucket: aws.s3.Bucket
    """The flow code bucket."""
    bucket_name: pulumi.Output[str]
    """Name of the bucket, for `prefect deploy` and the worker's pulls."""
    bucket_arn: pulumi.Output[str]
    """ARN of the bucket, for IAM policies."""

    def __init__(self, name: str, kms_key_arn: str | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prefect-fargate:storage:FlowStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=True, opts=child)
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        # SSE-KMS with the user's key (config kmsKeyArn), else S3-managed keys.
                        sse_algorithm="aws:kms" if kms_key_arn else "AES256",
                        kms_master_key_id=kms_key_arn,
                    ),
                    # With SSE-KMS, S3 asks KMS for a bucket-level key instead of one per object.
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-old-flow-code",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=NONCURRENT_VERSION_DAYS
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=self.bucket.id,
            policy=deny_insecure_transport(self.bucket.arn),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})
