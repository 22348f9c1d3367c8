"""The project's own boto3 waiter models, for the waits botocore has no waiter for.

`RetryingClient.get_waiter(name)` / `.wait(name, ...)` look a name up here first (by the
client's service), then in botocore's models, so a custom waiter is called like any
other and its polls go through the same retry loop. The acceptors are checked in order;
the first that matches decides; none matching means "poll again".

Why not botocore's own:
- ACM `certificate_validated` succeeds when every domain's ValidationStatus is SUCCESS,
  not when the certificate is ISSUED (what an HTTPS listener needs), and its only failure
  state is FAILED: a VALIDATION_TIMED_OUT, REVOKED, EXPIRED or INACTIVE certificate would
  be polled until the deadline. `certificate_issued` fails on all of them at once.
- ACM has no waiter for "every domain has its DNS validation record":
  `certificate_validation_records`.
- Elastic Beanstalk `environment_exists` (Ready) has no failure state: an environment
  that is terminating or gone would be polled until the deadline. `environment_ready`
  fails at once on both.
"""

from __future__ import annotations

from typing import Any

from botocore import xform_name
from botocore.waiter import WaiterModel

# an ACM certificate in one of these will never be ISSUED
CERTIFICATE_DEAD_STATUSES = ("FAILED", "VALIDATION_TIMED_OUT", "REVOKED", "EXPIRED", "INACTIVE")


def _certificate_dead() -> list[dict[str, Any]]:
    return [
        {"matcher": "path", "argument": "Certificate.Status", "expected": s, "state": "failure"}
        for s in CERTIFICATE_DEAD_STATUSES
    ]


# options present, and none without its record (`!` of an empty list is true)
_ALL_RECORDS = (
    "Certificate.DomainValidationOptions[0] != null && "
    "!(Certificate.DomainValidationOptions[?!ResourceRecord])"
)

_MODELS: dict[str, dict[str, Any]] = {
    "acm": {
        "version": 2,
        "waiters": {
            "CertificateValidationRecords": {
                "description": "Every domain of the certificate has its DNS validation record.",
                "operation": "DescribeCertificate",
                "delay": 5,
                "maxAttempts": 60,
                "acceptors": [
                    *_certificate_dead(),
                    {
                        "matcher": "path",
                        "argument": _ALL_RECORDS,
                        "expected": True,
                        "state": "success",
                    },
                ],
            },
            "CertificateIssued": {
                "description": "The certificate is ISSUED.",
                "operation": "DescribeCertificate",
                "delay": 10,
                "maxAttempts": 60,
                "acceptors": [
                    {
                        "matcher": "path",
                        "argument": "Certificate.Status",
                        "expected": "ISSUED",
                        "state": "success",
                    },
                    *_certificate_dead(),
                ],
            },
        },
    },
    "elasticbeanstalk": {
        "version": 2,
        "waiters": {
            "EnvironmentReady": {
                "description": "The environment described (by name/id) is Ready.",
                "operation": "DescribeEnvironments",
                "delay": 20,
                "maxAttempts": 45,
                "acceptors": [
                    {
                        "matcher": "path",
                        "argument": "Environments",
                        "expected": [],
                        "state": "failure",
                    },
                    {
                        "matcher": "pathAny",
                        "argument": "Environments[].Status",
                        "expected": "Terminating",
                        "state": "failure",
                    },
                    {
                        "matcher": "pathAny",
                        "argument": "Environments[].Status",
                        "expected": "Terminated",
                        "state": "failure",
                    },
                    {
                        "matcher": "pathAll",
                        "argument": "Environments[].Status",
                        "expected": "Ready",
                        "state": "success",
                    },
                ],
            },
        },
    },
}

WAITER_MODELS: dict[str, WaiterModel] = {svc: WaiterModel(m) for svc, m in _MODELS.items()}


def custom_waiter(service: str, name: str) -> tuple[WaiterModel, str] | None:
    """(model, model name) of the project's waiter `name` (snake_case, as boto3 names
    waiters) for `service` (its service name, e.g. `acm`), or None."""
    model = WAITER_MODELS.get(service)
    if model is None:
        return None
    for model_name in model.waiter_names:
        if xform_name(model_name) == name:
            return model, model_name
    return None
