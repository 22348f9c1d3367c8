"""ACM: the deployment's certificates."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tasks.aws.cleanup import Cleanup, dns, is_gone

ALL_KEY_TYPES = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
]


# -- find -------------------------------------------------------------------------------
def described_certificates(c: Cleanup) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(this deployment's certificates, everyone else's), each described."""
    acm = c.aws.client("acm")
    mine: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for summary in acm.pages(
        "list_certificates", "CertificateSummaryList", Includes={"keyTypes": ALL_KEY_TYPES}
    ):
        arn = summary["CertificateArn"]
        try:
            tags = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
            cert = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        except ClientError as exc:
            if is_gone(exc):
                continue
            raise
        (mine if c.mine(tags) else others).append(cert)
    return mine, others


def validation_cnames(certs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(name, value) of the DNS-validation CNAMEs of `certs`, normalised."""
    return {
        (dns(rr.get("Name")), dns(rr.get("Value")))
        for cert in certs
        for opt in cert.get("DomainValidationOptions", [])
        if (rr := opt.get("ResourceRecord")) and rr.get("Type", "CNAME") == "CNAME"
    }


# -- delete -----------------------------------------------------------------------------
def delete_certificates(c: Cleanup) -> None:
    acm = c.aws.client("acm")
    certs, _ = described_certificates(c)
    for cert in certs:
        arn = cert["CertificateArn"]
        c.attempt(
            "certificate",
            f"{cert.get('DomainName')} {arn.rsplit('/', 1)[-1]}",
            c.retrying,
            {"ResourceInUseException"},
            acm.delete_certificate,
            CertificateArn=arn,
        )
