"""S3: the deployment's buckets (the ALB access-log bucket)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from tasks.aws.cleanup import Cleanup
from tasks.planning import chunked


# -- delete -----------------------------------------------------------------------------
def empty_and_delete_bucket(c: Cleanup, bucket: str) -> None:
    """Every object version and delete marker, then any unversioned object, then the bucket."""
    s3 = c.aws.client("s3")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for batch in chunked(objects, 1000):
            res = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            failed = [e for e in res.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if failed:
                raise RuntimeError(
                    f"{len(failed)} object(s) not deleted, first {failed[0].get('Key')}: "
                    f"{failed[0].get('Code')} {failed[0].get('Message')}"
                )
    # objects written without versioning, if the listing above missed any
    for obj in s3.pages("list_objects_v2", "Contents", Bucket=bucket):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


def delete_buckets(c: Cleanup) -> None:
    s3 = c.aws.client("s3")
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        try:
            tags = s3.get_bucket_tagging(Bucket=name).get("TagSet", [])
        except ClientError:
            continue  # NoSuchTagSet, another region's bucket, no access: not ours
        if c.mine(tags):
            c.attempt("s3-bucket", name, empty_and_delete_bucket, c, name)
