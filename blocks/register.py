"""`python -m blocks.register`: create or overwrite the project's Prefect blocks from settings.

    python -m blocks.register                 # AWS credentials + SSH key (when the key exists)
    python -m blocks.register --only ssh-key  # after `deploy` stage 1 created the key pair

* an `AwsCredentials` block (prefect-aws) named `TOMCAT_FLEET_AWS_CREDENTIALS_BLOCK`
  (default `tomcat-fleet-aws`) from the environment: AWS_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, the region and AWS_ENDPOINT_URL
  (the sandbox's endpoint; unset on AWS);
* a `Secret` block named `TOMCAT_FLEET_SSH_KEY_BLOCK` (default `<deployment>-ssh-key`) with
  the private key in `TOMCAT_FLEET_SSH_KEY_FILE` or `<state_dir>/<deployment>/<key>.pem`.
  When that file does not exist yet it is skipped with a message: the deploy's stage 1
  creates the key pair and writes the file; run this again afterwards.

Blocks go to the Prefect API in PREFECT_API_URL. No secret is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import TextIO

from blocks.aws_credentials import DEFAULT_BLOCK_NAME, credentials_from_env, describe
from blocks.settings import FleetSettings
from blocks.ssh_key import default_block_name, key_source, secret_from_file


@dataclass
class Registered:
    aws_block: str | None = None
    ssh_key_block: str | None = None


def register(
    settings: FleetSettings,
    aws: bool = True,
    ssh_key: bool = True,
    aws_block: str | None = None,
    ssh_key_block: str | None = None,
    out: TextIO | None = None,
) -> Registered:
    """Save the blocks (overwriting same-named ones); return the names saved."""
    done = Registered()

    def say(msg: str) -> None:
        print(msg, file=out or sys.stdout, flush=True)

    if aws:
        name = aws_block or settings.aws_credentials_block or DEFAULT_BLOCK_NAME
        creds = credentials_from_env(region=settings.region)
        if settings.aws_endpoint_url and not creds.aws_client_parameters.endpoint_url:
            creds.aws_client_parameters.endpoint_url = settings.aws_endpoint_url
        creds.save(name, overwrite=True)
        say(f"blocks: AwsCredentials {name!r} saved ({describe(creds)})")
        done.aws_block = name
    if ssh_key:
        name = ssh_key_block or default_block_name(settings)
        path = key_source(settings)
        if not path.is_file():
            say(
                f"blocks: Secret {name!r} skipped: no private key at {path} yet "
                "(the deploy's stage 1 creates it; run `python -m blocks.register "
                "--only ssh-key` afterwards)"
            )
        else:
            secret_from_file(path).save(name, overwrite=True)
            say(f"blocks: Secret {name!r} saved (SSH private key from {path})")
            done.ssh_key_block = name
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m blocks.register",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--only", choices=["aws", "ssh-key"], default=None)
    p.add_argument("--aws-block", default=None, help="block name (default from settings)")
    p.add_argument("--ssh-key-block", default=None, help="block name (default from settings)")
    args = p.parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        print(
            "blocks: PREFECT_API_URL is not set; blocks go to the active Prefect profile's API",
            file=sys.stderr,
        )
    settings = FleetSettings()
    register(
        settings,
        aws=args.only in (None, "aws"),
        ssh_key=args.only in (None, "ssh-key"),
        aws_block=args.aws_block,
        ssh_key_block=args.ssh_key_block,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
