"""Running it the way users do: the blocks registered and read back through the Prefect API."""

from __future__ import annotations

from pathlib import Path

import pytest


# -- blocks ------------------------------------------------------------------------------
def test_blocks_register_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.blocks.system import Secret
    from prefect_aws import AwsCredentials

    from blocks.register import register
    from blocks.settings import FleetSettings

    for k, v in {
        "AWS_ACCESS_KEY_ID": "AKIDROUNDTRIP",
        "AWS_SECRET_ACCESS_KEY": "very-secret-value",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4599",
        "AWS_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(k, v)
    settings = FleetSettings(
        deployment_name="blocktest", state_dir=str(tmp_path), region="eu-west-1"
    )

    # no key file yet: the AWS block is saved, the SSH key block skipped with a message
    done = register(settings, aws_block="blocktest-aws")
    assert done.aws_block == "blocktest-aws" and done.ssh_key_block is None
    assert "skipped" in capsys.readouterr().out

    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIroundtrip\n-----END RSA PRIVATE KEY-----\n"
    key = settings.key_file_path()
    key.parent.mkdir(parents=True)
    key.write_text(pem)
    done = register(settings, aws_block="blocktest-aws")
    assert done.ssh_key_block == "blocktest-ssh-key"
    printed = capsys.readouterr().out
    assert "very-secret-value" not in printed and "MIIroundtrip" not in printed

    creds = AwsCredentials.load("blocktest-aws")
    assert isinstance(creds, AwsCredentials)
    assert creds.aws_access_key_id == "AKIDROUNDTRIP"
    assert creds.aws_secret_access_key is not None
    assert creds.aws_secret_access_key.get_secret_value() == "very-secret-value"
    assert creds.region_name == "eu-west-1"
    assert creds.aws_client_parameters.endpoint_url == "http://127.0.0.1:4599"
    secret = Secret.load("blocktest-ssh-key")
    assert isinstance(secret, Secret) and secret.get() == pem

    # overwriting works (a second registration with new values)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4600")
    register(settings, ssh_key=False, aws_block="blocktest-aws")
    again = AwsCredentials.load("blocktest-aws")
    assert isinstance(again, AwsCredentials)
    assert again.aws_client_parameters.endpoint_url == "http://127.0.0.1:4600"


def test_missing_credentials_block_is_one_line_naming_the_register_command() -> None:
    from blocks.aws_credentials import BlockNotFound
    from blocks.settings import FleetSettings
    from tasks.aws import Aws

    with pytest.raises(BlockNotFound) as info:
        Aws(FleetSettings(aws_credentials_block="no-such-block"))
    msg = str(info.value)
    assert "\n" not in msg and "python -m blocks.register" in msg and "no-such-block" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__
