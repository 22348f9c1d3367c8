"""S3: buckets and objects, named as IAM names the request (moto names S3 calls its own way).

moto derives the bucket or object ARN; the action comes from the method and subresource.
"""

from __future__ import annotations

from typing import Any

from ..checks import Checks, ModelError, tags_of

# moto names S3 calls by its own table (HeadBucket, PutPublicAccessBlock, a PUT ?encryption
# as CreateBucket, ...); AWS authorises them as these IAM actions (method, subresource)
_S3_BUCKET_ACTIONS = {
    ("HEAD", ""): "ListBucket",
    ("GET", ""): "ListBucket",
    ("GET", "versions"): "ListBucketVersions",
    ("GET", "tagging"): "GetBucketTagging",
    ("GET", "encryption"): "GetEncryptionConfiguration",
    ("GET", "publicAccessBlock"): "GetBucketPublicAccessBlock",
    ("GET", "ownershipControls"): "GetBucketOwnershipControls",
    ("GET", "policy"): "GetBucketPolicy",
    ("GET", "acl"): "GetBucketAcl",
    ("GET", "location"): "GetBucketLocation",
    ("PUT", ""): "CreateBucket",
    ("PUT", "tagging"): "PutBucketTagging",
    ("PUT", "encryption"): "PutEncryptionConfiguration",
    ("PUT", "publicAccessBlock"): "PutBucketPublicAccessBlock",
    ("PUT", "ownershipControls"): "PutBucketOwnershipControls",
    ("PUT", "policy"): "PutBucketPolicy",
    ("PUT", "acl"): "PutBucketAcl",
    ("DELETE", ""): "DeleteBucket",
    ("DELETE", "tagging"): "PutBucketTagging",
    ("DELETE", "policy"): "DeleteBucketPolicy",
    ("POST", "delete"): "DeleteObject",  # DeleteObjects: authorised per object
}
_S3_OBJECT_ACTIONS = {
    ("HEAD", ""): "GetObject",
    ("GET", ""): "GetObject",
    ("PUT", ""): "PutObject",
    ("DELETE", ""): "DeleteObject",
    ("DELETE", "versionId"): "DeleteObjectVersion",
}


def s3_action(method: str, path: str) -> tuple[str, bool] | None:
    """(the IAM action of an S3 request, whether it acts on objects), None if not known."""
    where, _, query = path.partition("?")
    keys = [q.split("=", 1)[0] for q in query.split("&") if q]
    parts = where.lstrip("/").split("/", 1)
    if not parts[0]:
        return ("ListAllMyBuckets", False) if method == "GET" else None
    table = _S3_OBJECT_ACTIONS if len(parts) == 2 and parts[1] else _S3_BUCKET_ACTIONS
    for sub in [*keys, ""]:
        action = table.get((method, sub))
        if action:
            return action, table is _S3_OBJECT_ACTIONS or (method, sub) == ("POST", "delete")
    return None


def _bucket_tags(c: Checks, bucket: str) -> dict[str, str]:
    from moto.s3.models import s3_backends

    try:
        backend: Any = s3_backends[c.call.account][c.call.partition]
        return tags_of(backend.get_bucket_tagging(bucket).get("Tags"))
    except Exception:  # no such bucket (yet), or no tags
        return {}


def request(c: Checks) -> None:
    found = s3_action(c.call.method, c.call.path)
    if found is None:
        raise ModelError(f"S3 {c.call.method} {c.call.path.split('?')[0]}: unknown action")
    action, on_objects = found
    resource = c.call.resource_hint
    bucket = resource.split(":::", 1)[-1].split("/", 1)[0]
    if action == "ListAllMyBuckets":
        c.unscoped(action="s3:ListAllMyBuckets")
        return
    if on_objects:
        if "/" not in resource.split(":::", 1)[-1]:
            resource += "/*"  # DeleteObjects names the bucket; AWS checks each object
        c.add("object", resource, action=f"s3:{action}")
    else:
        c.add("bucket", resource, action=f"s3:{action}", resource_tags=_bucket_tags(c, bucket))


MODELS = {"*": request}
