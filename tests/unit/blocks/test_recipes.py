"""The install recipes are data; TOMCAT_FLEET_RECIPE picks one and fills in what is not set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from blocks.install_steps import InstallStep
from blocks.recipes import AL2023, RECIPES, UBUNTU_2204, Recipe, ami_parameters, recipe
from blocks.settings import DEFAULT_INSTALL_STEPS, DEFAULT_PROBE, FleetSettings

ROOT = Path(__file__).resolve().parents[3]


def test_two_recipes_with_their_images_users_and_tomcat() -> None:
    assert list(RECIPES) == ["ubuntu-22.04", "al2023"]
    assert UBUNTU_2204.ssh_user == "ubuntu" and AL2023.ssh_user == "ec2-user"
    assert UBUNTU_2204.ami_parameter == (
        "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
    )
    assert AL2023.ami_parameter == (
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )
    assert (UBUNTU_2204.tomcat_package, UBUNTU_2204.tomcat_service) == ("tomcat9", "tomcat9")
    assert (AL2023.tomcat_package, AL2023.tomcat_service) == ("tomcat10", "tomcat10")
    assert ami_parameters() == [UBUNTU_2204.ami_parameter, AL2023.ami_parameter]


def test_al2023_steps_use_dnf_and_no_apt() -> None:
    commands = [s.command for s in AL2023.install_steps]
    assert not any("apt" in c or "dpkg" in c for c in commands)
    assert "cloud-init status --wait" in commands  # generic: waits for first boot only
    assert "sudo dnf install -y -q tomcat10 tomcat10-webapps" in commands
    assert "sudo systemctl enable --now tomcat10" in commands
    assert [s.name for s in AL2023.install_steps][-1] == "verify"
    assert "tomcat10" in AL2023.probe_command and "localhost:8080" in AL2023.probe_command
    install = next(s for s in AL2023.install_steps if s.name == "install")
    assert "Error downloading packages" in install.transient_markers
    assert all("dnf" in c for _, c in AL2023.mysql_client_steps)


def test_ubuntu_recipe_is_the_former_default() -> None:
    """The Ubuntu recipe is byte for byte what the settings held before recipes."""
    assert [s.name for s in UBUNTU_2204.install_steps] == [
        "cloud-init",
        "apt-update",
        "install",
        "enable-start",
        "verify",
    ]
    assert list(UBUNTU_2204.install_steps) == DEFAULT_INSTALL_STEPS
    assert UBUNTU_2204.probe_command == DEFAULT_PROBE
    assert UBUNTU_2204.install_steps[2].command == (
        "sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 "
        "install -y -q tomcat9"
    )
    assert UBUNTU_2204.mysql_client_check == "dpkg -s mysql-client"


@pytest.mark.parametrize("r", list(RECIPES.values()), ids=list(RECIPES))
def test_recipe_steps_are_valid_install_steps(r: Recipe) -> None:
    assert r is RECIPES[r.name]
    for step in r.install_steps:
        InstallStep.model_validate(step.model_dump())


def test_default_settings_are_ubuntu() -> None:
    s = FleetSettings()
    assert s.recipe == "ubuntu-22.04" and s.os_recipe is UBUNTU_2204
    assert s.ssh_user == "ubuntu"
    assert s.install_steps == list(UBUNTU_2204.install_steps)
    assert s.probe_command == UBUNTU_2204.probe_command


def test_al2023_fills_user_steps_probe() -> None:
    s = FleetSettings(recipe="al2023")
    assert s.os_recipe is AL2023
    assert s.ssh_user == "ec2-user"
    assert s.install_steps == list(AL2023.install_steps)
    assert s.probe_command == AL2023.probe_command
    assert s.ami_id is None  # the AMI comes from AL2023.ami_parameter at launch


def test_explicit_settings_win_over_the_recipe() -> None:
    steps = [InstallStep(name="only", command="true")]
    s = FleetSettings(
        recipe="al2023",
        ssh_user="admin",
        install_steps=steps,
        probe_command="false",
        ami_id="ami-0123456789abcdef0",
    )
    assert (s.ssh_user, s.install_steps, s.probe_command, s.ami_id) == (
        "admin",
        steps,
        "false",
        "ami-0123456789abcdef0",
    )


def test_recipe_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOMCAT_FLEET_RECIPE", "al2023")
    monkeypatch.setenv("TOMCAT_FLEET_SSH_USER", "")  # empty: the recipe's
    assert FleetSettings().ssh_user == "ec2-user"
    monkeypatch.setenv("TOMCAT_FLEET_SSH_USER", "someone")
    assert FleetSettings().ssh_user == "someone"


def test_unknown_recipe_is_one_error_naming_the_field_and_choices() -> None:
    with pytest.raises(ValidationError) as info:
        FleetSettings(recipe="centos")
    errors = info.value.errors()
    assert len(errors) == 1 and errors[0]["loc"] == ("recipe",)
    assert "'ubuntu-22.04' or 'al2023'" in errors[0]["msg"]
    with pytest.raises(ValueError, match=r"ubuntu-22\.04, al2023"):
        recipe("centos")


def test_cli_refuses_an_unknown_recipe_in_one_line(tmp_path: Path) -> None:
    """Before any server is planned and anything is created: one line naming the field and
    the allowed values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(
        TOMCAT_FLEET_PREFECT_DIR=str(tmp_path / "prefect"),
        TOMCAT_FLEET_RECIPE="centos",
        COLUMNS="250",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "flows", "deploy", "--instances", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "recipe" in lines[0] and "'ubuntu-22.04' or 'al2023'" in lines[0]
    assert not (tmp_path / "prefect").exists()
