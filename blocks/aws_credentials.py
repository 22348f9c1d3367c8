"""The prefect-aws `AwsCredentials` block flows load by name (settings.aws_credentials_block).

Built from the current environment, the way boto3 reads it: access key, secret, session
token, region, and `AWS_ENDPOINT_URL` as `aws_client_parameters.endpoint_url` (set for the
sandbox, unset on AWS). Nothing here prints a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import cast

from prefect_aws import AwsClientParameters, AwsCredentials

from blocks.fleet_error import BlockNotFound, quiet_tracebacks

__all__ = ["BlockNotFound", "credentials_from_env", "describe", "load_credentials"]

DEFAULT_BLOCK_NAME = "tomcat-fleet-aws"


def credentials_from_env(
    env: Mapping[str, str] | None = None, region: str | None = None
) -> AwsCredentials:
    """An unsaved AwsCredentials block from `env` (default: os.environ), read as boto3 reads
    it: AWS_* only (the settings' region and endpoint are the caller's: blocks.register)."""
    env = os.environ if env is None else env
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    return AwsCredentials(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        profile_name=env.get("AWS_PROFILE") or None,
        region_name=region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
    )


def load_credentials(name: str) -> AwsCredentials:
    """The saved AwsCredentials block `name`; missing, a one-line error naming the command
    that creates it (not Prefect's deep "Unable to find block document" ValueError)."""
    try:
        return cast(AwsCredentials, AwsCredentials.load(name))
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        quiet_tracebacks()
        raise BlockNotFound(
            f"no AwsCredentials block named {name!r} on this Prefect API: create it with "
            f"`python -m blocks.register --only aws --aws-block {name}` "
            "(credentials from AWS_* in the environment)"
        ) from None


def describe(creds: AwsCredentials) -> str:
    """One line about a block, secrets masked."""
    key = creds.aws_access_key_id or ""
    shown = f"{key[:4]}…" if key else "default chain"
    return (
        f"access key {shown}, region {creds.region_name or 'unset'}, endpoint "
        f"{creds.aws_client_parameters.endpoint_url or 'AWS'}"
    )
