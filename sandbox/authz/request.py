"""One API call as IAM sees it: who calls, which action, with which parameters.

`from_moto(response, iam_request, resource)` is called inside moto's dispatch, once the
signature checked: it parses the request with botocore's model of the operation (the same
parser moto uses), so a model reads `RunInstances`' `TagSpecifications` as botocore names
them, whatever the protocol (query, JSON, REST-XML).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# IAM's global services: their calls are authorized in us-east-1 whatever the endpoint
_GLOBAL = {"iam", "route53", "sts"}
# services whose signing name (what moto knows the request by) is not their IAM prefix
_IAM_PREFIX = {"monitoring": "cloudwatch"}


@dataclass
class Call:
    prefix: str  # the IAM service prefix: ec2, elasticloadbalancing, rds, ...
    action: str  # the operation: RunInstances, ...
    params: dict[str, Any]
    account: str
    region: str
    partition: str = "aws"
    principal: str = ""  # the caller's ARN
    method: str = "POST"
    path: str = "/"
    resource_hint: str = "*"  # what moto derived (S3: the bucket or object ARN)
    called_via: tuple[str, ...] = field(default_factory=tuple)  # service principals

    @property
    def name(self) -> str:
        return f"{self.prefix}:{self.action}"

    @property
    def requested_region(self) -> str:
        return "us-east-1" if self.prefix in _GLOBAL else self.region

    def tags(self, key: str = "Tags") -> dict[str, str]:
        """A `[{Key, Value}]` parameter as a dict (absent: empty)."""
        return tag_dict(self.params.get(key))


def tag_dict(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(t.get("Key")): str(t.get("Value", "")) for t in raw or [] if t.get("Key")}


def _parse_params(response: Any, action: str) -> dict[str, Any]:
    from moto.core.responses import PROTOCOL_PARSERS, determine_request_protocol
    from moto.core.utils import get_service_model

    request = response.normalized_request
    model = get_service_model(response.boto3_service_name)
    operation = model.operation_model(action)
    protocol = determine_request_protocol(model, request.content_type)
    parser = PROTOCOL_PARSERS[protocol](operation, map_type=dict)
    parsed = parser.parse(
        {
            "method": request.method,
            "values": request.values,
            "headers": request.headers,
            "body": request.data,
            "url_path": request.path,
            "url_params": getattr(response, "uri_match", {}) or {},
        }
    )
    return dict(parsed)


def from_moto(response: Any, iam_request: Any, resource: str) -> Call:
    """The call moto is about to serve (`response`: its BaseResponse; `iam_request`: the
    IAMRequest whose signature it checked)."""
    prefix = _IAM_PREFIX.get(iam_request._service, iam_request._service)
    action = iam_request._action.split(":", 1)[1]
    params: dict[str, Any] = {}
    if prefix != "s3":  # S3's REST names are moto's own; sandbox.authz.models.s3 reads them
        params = _parse_params(response, action)
    from moto.utilities.utils import get_partition

    return Call(
        prefix=prefix,
        action=action,
        params=params,
        account=iam_request.account_id,
        region=iam_request._region,
        partition=get_partition(iam_request._region),
        principal=iam_request._access_key.arn,
        method=iam_request._method,
        path=iam_request._path,
        resource_hint=resource,
    )
