"""ACM: certificates. RequestCertificate is authorized against no resource; tags given with
it are also checked as `acm:AddTagsToCertificate` on the new certificate."""

from __future__ import annotations

from typing import Any

from ..checks import Checks, tags_of


def _backend(c: Checks) -> Any:
    from moto.acm.models import acm_backends

    return acm_backends[c.call.account][c.call.region]


def _cert_tags(c: Checks, arn: str) -> dict[str, str]:
    cert = _backend(c)._certificates.get(arn)
    return tags_of(dict(cert.tags)) if cert is not None else {}


def request_certificate(c: Checks) -> None:
    tags = c.call.tags()
    c.unscoped(request_tags=tags)
    if tags:
        c.add(
            "certificate",
            c.arn("certificate"),
            action="acm:AddTagsToCertificate",
            request_tags=tags,
            why="tags on create",
        )


def by_arn(c: Checks) -> None:
    arn = c.call.params.get("CertificateArn", "")
    tags = c.call.tags() or None
    c.add("certificate", arn, request_tags=tags, resource_tags=_cert_tags(c, arn))


MODELS = {
    "RequestCertificate": request_certificate,
    "DescribeCertificate": by_arn,
    "DeleteCertificate": by_arn,
    "ListTagsForCertificate": by_arn,
    "AddTagsToCertificate": by_arn,
    "RemoveTagsFromCertificate": by_arn,
    "GetCertificate": by_arn,
}
