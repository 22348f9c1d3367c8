"""The sandbox's S3 request -> IAM action table (moto names S3 calls its own way)."""

from __future__ import annotations

import pytest

from sandbox.authz.models.s3 import s3_action


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/", ("ListAllMyBuckets", False)),
        ("HEAD", "/b", ("ListBucket", False)),
        ("GET", "/b?list-type=2", ("ListBucket", False)),
        ("GET", "/b?versions", ("ListBucketVersions", False)),
        ("PUT", "/b", ("CreateBucket", False)),
        ("PUT", "/b?encryption", ("PutEncryptionConfiguration", False)),
        ("PUT", "/b?publicAccessBlock", ("PutBucketPublicAccessBlock", False)),
        ("GET", "/b?publicAccessBlock", ("GetBucketPublicAccessBlock", False)),
        ("PUT", "/b?ownershipControls", ("PutBucketOwnershipControls", False)),
        ("PUT", "/b?tagging", ("PutBucketTagging", False)),
        ("PUT", "/b?policy", ("PutBucketPolicy", False)),
        ("DELETE", "/b", ("DeleteBucket", False)),
        ("POST", "/b?delete", ("DeleteObject", True)),
        ("PUT", "/b/k/ey", ("PutObject", True)),
        ("DELETE", "/b/k?versionId=3", ("DeleteObjectVersion", True)),
        ("DELETE", "/b/k", ("DeleteObject", True)),
        ("POST", "/b", None),
    ],
)
def test_s3_action(method: str, path: str, expected: tuple[str, bool] | None) -> None:
    assert s3_action(method, path) == expected
